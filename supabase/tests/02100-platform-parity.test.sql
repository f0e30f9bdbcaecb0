-- What hosted Supabase refuses, refused here too: the roles' attributes, the storage
-- delete guard, the API roles' privileges on platform tables, and Realtime's message
-- table as Realtime keeps it. Every check holds on Supabase itself.
begin;
select plan(24);

-- Roles (supabase/postgres 10000000000000_demote-postgres.sql and
-- 20230529180330_alter_api_roles_for_inherit.sql)
select is((select rolsuper from pg_roles where rolname = 'postgres'), false, 'postgres is not a superuser');
select ok((select rolcreaterole and rolbypassrls and rolcreatedb from pg_roles where rolname = 'postgres'),
  'postgres keeps CREATEROLE, CREATEDB and BYPASSRLS');
select is((select rolsuper from pg_roles where rolname = current_user), false,
  'the suites run as a role that is not a superuser');
select ok((select rolinherit from pg_roles where rolname = 'anon'), 'anon is INHERIT');
select ok((select rolinherit from pg_roles where rolname = 'authenticated'), 'authenticated is INHERIT');
select isnt((select nspowner::regrole::text from pg_namespace where nspname = 'storage'), 'postgres',
  'the storage schema belongs to the platform, not to postgres');
select is((select relowner::regrole::text from pg_class where oid = 'storage.objects'::regclass),
  'supabase_storage_admin', 'storage.objects belongs to supabase_storage_admin');

-- The storage delete guard (supabase/storage migrations/tenant/0055-prevent-direct-deletes.sql)
select tests.create_user('parity-alice@utter.test', 'a11ce000-0000-4000-8000-0000000000aa');
select tests.upload_reference('parity-alice@utter.test', 'a11ce000-0000-4000-8000-00000000aa01');
select throws_ok(
  $$ delete from storage.objects where bucket_id = 'references' $$, '42501',
  'Direct deletion from storage tables is not allowed. Use the Storage API instead.',
  'postgres cannot delete from storage.objects directly');
select tests.authenticate_as_service_role();
select throws_ok($$ delete from storage.objects $$, '42501',
  'Direct deletion from storage tables is not allowed. Use the Storage API instead.',
  'nor can service_role');
select tests.clear_authentication();
select throws_ok($$ delete from storage.buckets where id = 'no-such-bucket' $$, '42501',
  'Direct deletion from storage tables is not allowed. Use the Storage API instead.',
  'buckets are guarded too, even when nothing would be deleted');
select set_config('storage.allow_delete_query', 'false', true);
select throws_ok($$ delete from storage.objects $$, '42501', null,
  'the guard stays shut while the setting is anything but true');
select tests.remove_object_as_storage_api('references',
  tests.reference_key('parity-alice@utter.test', 'a11ce000-0000-4000-8000-00000000aa01'));
select is_empty($$ select 1 from storage.objects where name like 'a11ce000-0000-4000-8000-0000000000aa/%' $$,
  'the Storage API''s own transaction (storage.allow_delete_query) removes the row');
select is(current_setting('storage.allow_delete_query', true), 'false',
  'and its permission ends with it');

-- No TRUNCATE on platform tables for the API roles: it would skip RLS and the guard.
select ok(not has_table_privilege('anon', 'storage.objects', 'TRUNCATE'), 'anon cannot truncate storage.objects');
select ok(not has_table_privilege('authenticated', 'storage.objects', 'TRUNCATE'),
  'authenticated cannot truncate storage.objects');
select ok(not has_table_privilege('authenticated', 'storage.buckets', 'TRUNCATE'),
  'authenticated cannot truncate storage.buckets');
select ok(not has_table_privilege('authenticated', 'realtime.messages', 'TRUNCATE'),
  'authenticated cannot truncate realtime.messages');

-- realtime.send adds "id" (realtime 20251103001201_broadcast_send_include_payload_id)
select realtime.send('{"n": 1}'::jsonb, 'probe', 'parity:topic', true);
select is((select (payload ->> 'id')::uuid = id from realtime.messages where topic = 'parity:topic'), true,
  'a payload without an id gets the message''s own id');
select is((select payload - 'id' from realtime.messages where topic = 'parity:topic'), '{"n": 1}'::jsonb,
  'and is otherwise unchanged');
select realtime.send('{"id": "mine", "n": 2}'::jsonb, 'probe', 'parity:own-id', true);
select is((select payload from realtime.messages where topic = 'parity:own-id'), '{"id": "mine", "n": 2}'::jsonb,
  'a payload with an id keeps it');

-- realtime.messages as Realtime keeps it (20241030150047_messages_partitioning,
-- 20260514120000_add_binary_payload_to_messages, lib/realtime/tenants.ex)
select is((select relkind::text from pg_class where oid = 'realtime.messages'::regclass), 'p',
  'realtime.messages is partitioned');
select set_eq(
  $$ select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'realtime.messages'::regclass $$,
  $$ select 'messages_' || to_char(d, 'YYYY_MM_DD')
     from generate_series((now() at time zone 'utc')::date - 1, (now() at time zone 'utc')::date + 3,
                          interval '1 day') d $$,
  'one partition per day, from yesterday to three days ahead');
select has_column('realtime', 'messages', 'binary_payload', 'realtime.messages has binary_payload');
select throws_ok(
  $$ insert into realtime.messages (topic, extension, payload, binary_payload)
     values ('parity:both', 'broadcast', '{}', '\x00') $$,
  '23514', null, 'a message carries a JSON payload or a binary one, not both');

select * from finish();
rollback;
