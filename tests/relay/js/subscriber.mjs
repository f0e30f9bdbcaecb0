// One realtime-js client on one private channel, driven by tests/relay/test_realtime_js.py.
// Settings come as JSON in argv[2]: {url, apikey, token, topic, vsn}. It prints one JSON
// line per thing that happens ({kind: "status" | "broadcast" | "system", ...}) and takes
// JSON commands on stdin: {op: "setAuth", token} and {op: "stop"}.
// Node 20 has no global WebSocket unless run with --experimental-websocket.
import { createInterface } from 'node:readline'
import { RealtimeClient } from '@supabase/realtime-js'

const settings = JSON.parse(process.argv[2])
const report = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const client = new RealtimeClient(`${settings.url}/realtime/v1`, {
  params: { apikey: settings.apikey },
  vsn: settings.vsn,
  // A refused join is retried by the client; keep the retries out of the way.
  reconnectAfterMs: () => 60_000,
})
await client.setAuth(settings.token)

const channel = client.channel(settings.topic, { config: { private: true } })
channel
  .on('broadcast', { event: '*' }, (message) => report({ kind: 'broadcast', message }))
  .on('system', {}, (message) => report({ kind: 'system', message }))
  .subscribe((status, error) => report({ kind: 'status', status, error: error ? error.message : null }))

async function stop() {
  await client.removeAllChannels()
  client.disconnect()
  process.exit(0)
}

createInterface({ input: process.stdin }).on('line', async (line) => {
  const command = JSON.parse(line)
  if (command.op === 'setAuth') {
    await client.setAuth(command.token)
    report({ kind: 'auth_set' })
  } else if (command.op === 'stop') {
    await stop()
  }
})
