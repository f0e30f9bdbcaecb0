-- The whole surface the API roles reach, checked from the catalogue so that a function,
-- table or view added later is covered without a test naming it: no function of ours
-- is executable by an API role or PUBLIC, the listener's and the webhook's roles reach
-- only their own schemas, every security definer function pins its search_path, every
-- table in an exposed schema has RLS, and every view runs with its caller's rights
-- except credit_activity (which filters by auth.uid() itself). Then the Realtime
-- topics: another user, anon, and an anonymous sign-up.
begin;
select plan(14);

select is_empty(
  $$ select p.oid::regprocedure::text || ' by ' || r.rolname from pg_proc p
     cross join (values ('anon'), ('authenticated'), ('service_role')) r (rolname)
     where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace,
                              'worker'::regnamespace, 'billing'::regnamespace)
       and has_function_privilege(r.rolname, p.oid, 'execute') $$,
  'no API role may execute a function in public, private, worker or billing');
select is_empty(
  $$ select p.oid::regprocedure::text from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
     where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace,
                              'worker'::regnamespace, 'billing'::regnamespace)
       and a.grantee = 0 and a.privilege_type = 'EXECUTE' $$,
  'PUBLIC holds EXECUTE on none of them');
select is_empty(
  $$ select p.oid::regprocedure::text from pg_proc p
     where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace, 'billing'::regnamespace)
       and has_function_privilege('utter_worker', p.oid, 'execute') $$,
  'utter_worker executes nothing outside worker.*');
select is_empty(
  $$ select p.oid::regprocedure::text from pg_proc p
     where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace, 'worker'::regnamespace)
       and has_function_privilege('utter_billing', p.oid, 'execute') $$,
  'utter_billing executes nothing outside billing.*');
select is_empty(
  $$ select p.oid::regprocedure::text from pg_proc p
     where p.prosecdef
       and p.pronamespace in ('public'::regnamespace, 'private'::regnamespace,
                              'worker'::regnamespace, 'billing'::regnamespace)
       and not coalesce(p.proconfig @> array['search_path=""'], false) $$,
  'every security definer function of ours runs with an empty search_path');
select is_empty(
  $$ select c.oid::regclass::text from pg_class c
     where c.relnamespace in ('public'::regnamespace, 'private'::regnamespace)
       and c.relkind in ('r', 'p') and not c.relrowsecurity $$,
  'every table in public and private has row level security');
select is_empty(
  $$ select c.oid::regclass::text from pg_class c
     where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')
       and not coalesce(c.reloptions @> array['security_invoker=true'], false)
       and c.oid <> 'public.credit_activity'::regclass $$,
  'every public view but credit_activity runs with its caller''s rights');
select is_empty(
  $$ select c.oid::regclass::text || ' ' || r.rolname from pg_class c
     cross join (values ('anon'), ('authenticated'), ('service_role')) r (rolname)
     where c.relnamespace = 'realtime'::regnamespace and c.relispartition
       and has_table_privilege(r.rolname, c.oid, 'select, insert, update, delete') $$,
  'no API role reaches a Realtime partition directly (they have no RLS of their own)');

-- Realtime topics -------------------------------------------------------------------
select tests.create_user('surface-alice@utter.test', 'a11ce000-0000-4000-8000-000000002931');
select tests.create_user('surface-bob@utter.test', 'b0b00000-0000-4000-8000-000000002932');
insert into auth.users (id, aud, role, is_anonymous, raw_app_meta_data, raw_user_meta_data)
values ('a0a0a0a0-0000-4000-8000-000000002933', 'authenticated', 'authenticated', true, '{}', '{}');
select realtime.send('{"n": 1}', 'probe', 'user:a11ce000-0000-4000-8000-000000002931', true);

select tests.authenticate_as('surface-bob@utter.test');
select set_config('realtime.topic', 'user:a11ce000-0000-4000-8000-000000002931', true);
select is_empty($$ select 1 from realtime.messages $$, 'another user cannot join alice''s topic');
select throws_ok($$ insert into realtime.messages (topic, extension, event, payload, private)
    values ('user:a11ce000-0000-4000-8000-000000002931', 'broadcast', 'probe', '{}', true) $$,
  '42501', null, 'nor broadcast on it');

select set_config('role', 'authenticated', true);
select set_config('request.jwt.claims', jsonb_build_object(
  'sub', 'a0a0a0a0-0000-4000-8000-000000002933', 'role', 'authenticated',
  'aud', 'authenticated', 'is_anonymous', true)::text, true);
select is_empty($$ select 1 from realtime.messages $$, 'an anonymous sign-up cannot join alice''s topic');

select tests.authenticate_as_anon();
select is_empty($$ select 1 from realtime.messages $$, 'anon reads no broadcast (no policy admits it)');

select tests.authenticate_as('surface-alice@utter.test');
select is((select count(*)::integer from realtime.messages where event = 'probe'), 1,
  'alice hears her own topic');
select tests.clear_authentication();
select is((select credits from public.profiles where id = 'a0a0a0a0-0000-4000-8000-000000002933'), 0,
  'an anonymous sign-up starts without free credits');

select * from finish();
rollback;
