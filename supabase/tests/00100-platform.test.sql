-- Pins the platform this project relies on: Supabase's roles and grants, auth
-- helpers that follow the JWT claims, pgmq's core API, and Broadcast from Database.
begin;
select plan(22);

select has_role('anon');
select has_role('authenticated');
select has_role('service_role');
select ok((select rolbypassrls from pg_roles where rolname = 'service_role'),
  'service_role bypasses RLS');
select ok(not (select rolbypassrls from pg_roles where rolname = 'authenticated'),
  'authenticated is subject to RLS');

select has_schema('extensions');
select has_table('auth', 'users', 'auth.users exists');
select has_table('storage', 'objects', 'storage.objects exists');
select has_table('realtime', 'messages', 'realtime.messages exists');
select ok(exists (select 1 from pg_publication where pubname = 'supabase_realtime'),
  'publication supabase_realtime exists');

-- auth.uid() and friends follow the claims PostgREST sets.
select tests.create_user('platform-a@example.com', '00000000-0000-0000-0000-00000000000a');
select tests.authenticate_as('platform-a@example.com');
select is(auth.uid(), '00000000-0000-0000-0000-00000000000a'::uuid, 'auth.uid() reads sub');
select is(auth.role(), 'authenticated', 'auth.role() reads role');
select is(auth.jwt() ->> 'email', 'platform-a@example.com', 'auth.jwt() returns the claims');
select is(current_user::text, 'authenticated', 'the request runs as the role in the JWT');
select tests.authenticate_as_anon();
select is(auth.uid(), null, 'anon has no uid');
select tests.clear_authentication();

-- storage path helpers
select is(storage.foldername('u1/v1/reference.wav'), array['u1', 'v1'], 'storage.foldername');
select is(storage.filename('u1/v1/reference.wav'), 'reference.wav', 'storage.filename');
select is(storage.extension('u1/v1/reference.wav'), 'wav', 'storage.extension');

-- pgmq: create, send, read, archive
select pgmq.create('platform_probe');
select ok((select pgmq.send('platform_probe', '{"hello": "world"}')) > 0, 'pgmq.send returns an id');
select is((select message ->> 'hello' from pgmq.read('platform_probe', 30, 1)), 'world',
  'pgmq.read returns the message');
select ok((select pgmq.archive('platform_probe', 1::bigint)), 'pgmq.archive moves it to the archive');

-- Broadcast from Database lands in realtime.messages with its topic.
select realtime.send('{"n": 1}'::jsonb, 'probe', 'platform:topic', true);
select is(
  (select count(*)::int from realtime.messages
    where topic = 'platform:topic' and event = 'probe' and private and extension = 'broadcast'),
  1, 'realtime.send inserts a private broadcast message');

select * from finish();
rollback;
