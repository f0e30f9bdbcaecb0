-- Who can reach what, outside the per-row policies: the listener's role is confined to
-- `worker.*`, and the API roles can reach neither `worker.*`, the queues nor the internals.
begin;
select plan(42);

-- Every table a client can name is behind row level security.
select ok((select relrowsecurity from pg_class where oid = 'public.languages'::regclass), 'RLS is enabled on languages');
select ok((select relrowsecurity from pg_class where oid = 'public.profiles'::regclass), 'RLS is enabled on profiles');
select ok((select relrowsecurity from pg_class where oid = 'public.voices'::regclass), 'RLS is enabled on voices');
select ok((select relrowsecurity from pg_class where oid = 'public.generations'::regclass), 'RLS is enabled on generations');
select ok((select relrowsecurity from pg_class where oid = 'public.design_previews'::regclass), 'RLS is enabled on design_previews');
select ok((select relrowsecurity from pg_class where oid = 'public.tasks'::regclass), 'RLS is enabled on tasks');
select ok((select relrowsecurity from pg_class where oid = 'private.credit_ledger'::regclass), 'RLS is enabled on the credit ledger');
select ok((select relrowsecurity from pg_class where oid = 'public.transcriptions'::regclass), 'RLS is enabled on transcriptions');

select set_eq(
  $$ select schemaname || '.' || tablename from pg_publication_tables where pubname = 'supabase_realtime' $$,
  array['public.tasks', 'public.generations', 'public.voices', 'public.design_previews', 'public.profiles',
        'public.purchases', 'public.transcriptions', 'public.generation_segments'],
  'the app''s tables are in publication supabase_realtime');

select has_table('pgmq', 'q_generate', 'queue generate exists');
select has_table('pgmq', 'q_design_preview', 'queue design_preview exists');
select has_table('pgmq', 'q_clone', 'queue clone exists');
select has_table('pgmq', 'q_storage_cleanup', 'queue storage_cleanup exists');

-- The listener's role: a plain login with no powers of its own.
select ok((select not rolsuper from pg_roles where rolname = 'utter_worker'), 'utter_worker is not a superuser');
select ok((select not rolbypassrls from pg_roles where rolname = 'utter_worker'), 'utter_worker does not bypass RLS');
select ok((select rolcanlogin from pg_roles where rolname = 'utter_worker'), 'utter_worker can log in');
select ok((select not rolcreaterole and not rolcreatedb from pg_roles where rolname = 'utter_worker'),
  'utter_worker creates neither roles nor databases');
select is_empty(
  $$ select 1 from pg_auth_members where member = 'utter_worker'::regrole $$,
  'utter_worker is a member of no other role');

select is(tests.outcome_as('utter_worker', 'select 1 from public.tasks'),
  '42501: permission denied for table tasks', 'utter_worker cannot read tasks directly');
select is(tests.outcome_as('utter_worker', 'select 1 from public.generations'),
  '42501: permission denied for table generations', 'utter_worker cannot read generations directly');
select is(tests.outcome_as('utter_worker', 'update public.profiles set credits = 1000'),
  '42501: permission denied for table profiles', 'utter_worker cannot write balances');
select is(tests.outcome_as('utter_worker', 'select 1 from private.credit_ledger'),
  '42501: permission denied for schema private', 'utter_worker cannot reach the ledger');
select is(tests.outcome_as('utter_worker', 'select 1 from pgmq.q_generate'),
  '42501: permission denied for schema pgmq', 'utter_worker cannot read a queue table');
select is(tests.outcome_as('utter_worker', $$ select pgmq.send('generate', '{}'::jsonb) $$),
  '42501: permission denied for schema pgmq', 'utter_worker cannot call pgmq.send');
select is(tests.outcome_as('utter_worker', 'select 1 from storage.objects'),
  '42501: permission denied for schema storage', 'utter_worker reaches storage only through worker.*');
select is(tests.outcome_as('utter_worker', 'select * from worker.queue_metrics()'),
  'ok', 'utter_worker can execute worker.* functions');

-- worker.* runs as its owner with a pinned search_path, and only utter_worker may call it.
select is_empty(
  $$ select p.proname from pg_proc p
     where p.pronamespace = 'worker'::regnamespace
       and (not p.prosecdef or not coalesce(p.proconfig @> array['search_path=""'], false)) $$,
  'every worker.* function is security definer with an empty search_path');
select is_empty(
  $$ select p.proname || ' by ' || r.rolname from pg_proc p
     cross join (values ('anon'), ('authenticated'), ('service_role')) r (rolname)
     where p.pronamespace in ('worker'::regnamespace, 'private'::regnamespace)
       and has_function_privilege(r.rolname, p.oid, 'execute') $$,
  'no API role holds EXECUTE on a worker.* or private.* function');
select is_empty(
  $$ select p.proname from pg_proc p
     where p.pronamespace = 'worker'::regnamespace
       and not has_function_privilege('utter_worker', p.oid, 'execute') $$,
  'utter_worker may execute every worker.* function');

select tests.create_user('grants-alice@utter.test');

select tests.authenticate_as('grants-alice@utter.test');
select throws_ok(
  $$ select worker.claim_task('generate', 1, gen_random_uuid(), 'w', 3) $$,
  '42501', 'permission denied for schema worker', 'a signed-in user cannot claim tasks');
select throws_ok(
  $$ select worker.complete_task(gen_random_uuid(), 'w', '{"duration_seconds": 1}') $$,
  '42501', 'permission denied for schema worker', 'a signed-in user cannot complete tasks');
select throws_ok(
  $$ select pgmq.send('generate', '{"task_id": null}'::jsonb) $$,
  '42501', 'permission denied for schema pgmq', 'a signed-in user cannot enqueue directly');
select throws_ok(
  $$ select * from pgmq.read('generate', 30, 1) $$,
  '42501', 'permission denied for schema pgmq', 'a signed-in user cannot read a queue');
select throws_ok(
  $$ select private.open_task(auth.uid(), 'generate', gen_random_uuid(), 10) $$,
  '42501', 'permission denied for schema private', 'a signed-in user cannot open tasks directly');

select tests.authenticate_as_anon();
select throws_ok(
  $$ select worker.fail_task(gen_random_uuid(), 'w', 'x', false, 0, 3) $$,
  '42501', 'permission denied for schema worker', 'anon cannot fail tasks');
select throws_ok(
  $$ select pgmq.send('generate', '{}'::jsonb) $$,
  '42501', 'permission denied for schema pgmq', 'anon cannot enqueue');
select throws_ok(
  $$ select * from pgmq.read('generate', 30, 1) $$,
  '42501', 'permission denied for schema pgmq', 'anon cannot read a queue');

-- The service role is server code acting for users, not the listener.
select tests.authenticate_as_service_role();
select throws_ok(
  $$ select worker.claim_task('generate', 1, gen_random_uuid(), 'w', 3) $$,
  '42501', 'permission denied for schema worker', 'service_role cannot claim tasks');
select throws_ok(
  $$ select * from worker.read_messages('generate', 30, 1) $$,
  '42501', 'permission denied for schema worker', 'service_role cannot read messages through worker.*');
select throws_ok(
  $$ select pgmq.send('generate', '{}'::jsonb) $$,
  '42501', 'permission denied for schema pgmq', 'service_role cannot enqueue');
select throws_ok(
  $$ select * from pgmq.read('generate', 30, 1) $$,
  '42501', 'permission denied for schema pgmq', 'service_role cannot read a queue');
select throws_ok(
  $$ select 1 from private.credit_ledger $$,
  '42501', 'permission denied for schema private', 'service_role cannot reach the ledger');
select tests.clear_authentication();

select * from finish();
rollback;
