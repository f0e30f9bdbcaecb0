// Smoke test on the real Supabase stack (`supabase start`; .github/workflows/supabase.yml):
// what the browser does, with supabase-js. A signed-in user joins their private channel
// `user:<id>` through Realtime, inserts a design preview through PostgREST, and must
// receive the broadcasts of the new row and its task. A second user may not join the
// first user's channel. Settings: API_URL, ANON_KEY, SERVICE_ROLE_KEY (from
// `supabase status -o env`). Exits 0 when every check passed, 1 otherwise.
import { createClient } from '@supabase/supabase-js'

const { API_URL, ANON_KEY, SERVICE_ROLE_KEY } = process.env
if (!API_URL || !ANON_KEY || !SERVICE_ROLE_KEY) {
  console.error('smoke: API_URL, ANON_KEY and SERVICE_ROLE_KEY must be set (supabase status -o env)')
  process.exit(1)
}
const WAIT_MS = 20_000
const admin = createClient(API_URL, SERVICE_ROLE_KEY, { auth: { persistSession: false } })

function check(condition, what) {
  if (!condition) throw new Error(`smoke: FAILED: ${what}`)
  console.log(`smoke: ok: ${what}`)
}

// A confirmed user signed in the way a magic link does: sign-ups and password sign-ins
// need a captcha (supabase/config.toml), verifying a link's token does not.
async function signedInUser(label) {
  const email = `smoke-${label}-${Date.now()}@utter.test`
  const created = await admin.auth.admin.createUser({ email, email_confirm: true })
  if (created.error) throw created.error
  const link = await admin.auth.admin.generateLink({ type: 'magiclink', email })
  if (link.error) throw link.error
  const client = createClient(API_URL, ANON_KEY, { auth: { persistSession: false } })
  const verified = await client.auth.verifyOtp({ token_hash: link.data.properties.hashed_token, type: 'magiclink' })
  if (verified.error) throw verified.error
  await client.realtime.setAuth(verified.data.session.access_token)
  return { client, id: verified.data.user.id }
}

// Joins a private channel; resolves with the channel once joined, or the refusal.
function join(client, topic, onBroadcast = () => {}) {
  return new Promise((resolve) => {
    const channel = client.channel(topic, { config: { private: true } })
    channel.on('broadcast', { event: '*' }, (message) => onBroadcast(message.payload))
    const timer = setTimeout(() => resolve({ channel, status: 'TIMED_OUT' }), WAIT_MS)
    channel.subscribe((status, error) => {
      if (status === 'SUBSCRIBED' || status === 'CHANNEL_ERROR') {
        clearTimeout(timer)
        resolve({ channel, status, error })
      }
    })
  })
}

async function main() {
  const alice = await signedInUser('alice')
  const mallory = await signedInUser('mallory')

  const received = []
  let arrived = () => {}
  const joined = await join(alice.client, `user:${alice.id}`, (payload) => {
    received.push(payload)
    arrived()
  })
  check(joined.status === 'SUBSCRIBED', `alice joins her private channel user:${alice.id}`)

  const intruder = await join(mallory.client, `user:${alice.id}`)
  check(intruder.status !== 'SUBSCRIBED', "mallory may not join alice's channel")

  const inserted = await alice.client
    .from('design_previews')
    .insert({ instruct: 'A calm narrator', text: 'Hello from the smoke test.', language: 'English' })
    .select('id, status')
    .single()
  check(!inserted.error, `alice inserts a design preview through PostgREST (${inserted.error?.message ?? 'ok'})`)
  check(inserted.data.status === 'pending', 'the new preview is pending')

  const previewId = inserted.data.id
  // One message for the insert: the task, carrying the preview as its subject.
  const has = () =>
    received.some(
      (m) =>
        m.table === 'tasks' &&
        m.operation === 'INSERT' &&
        m.record?.design_preview_id === previewId &&
        m.subject?.table === 'design_previews' &&
        m.subject?.record?.id === previewId,
    )
  const deadline = Date.now() + WAIT_MS
  while (!has() && Date.now() < deadline) {
    await new Promise((resolve) => {
      arrived = resolve
      setTimeout(resolve, 500)
    })
  }
  check(has(), 'the task, carrying the preview, arrives as a broadcast through Realtime')
  const task = received.find((m) => m.table === 'tasks')
  check(!('user_id' in task.record) && !('claimed_by' in task.record), 'a broadcast carries no internal columns')

  await alice.client.removeAllChannels()
  await mallory.client.removeAllChannels()
}

try {
  await main()
  console.log('smoke: passed')
  process.exit(0)
} catch (error) {
  console.error(error.message ?? error)
  process.exit(1)
}
