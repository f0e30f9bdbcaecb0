-- Helpers for acting as a user in pgTAP tests, installed once per database and kept
-- (no rollback), so every later file can use them. They set the role and the JWT
-- claims exactly as PostgREST does for a request: `role` plus `request.jwt.claims`,
-- transaction-local, so each test's `rollback` also ends the impersonation.
create extension if not exists pgtap with schema extensions;

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- Creates an auth user (what GoTrue does on sign-up) and returns its id.
create or replace function tests.create_user(email text, user_id uuid default gen_random_uuid())
returns uuid
language sql
security definer
set search_path = ''
as $$
  insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data)
  values (user_id, 'authenticated', 'authenticated', email,
          '{"provider": "email"}'::jsonb, '{}'::jsonb)
  returning id
$$;

create or replace function tests.get_user_id(email text) returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select id from auth.users u where u.email = get_user_id.email
$$;

create or replace function tests.authenticate_as(email text) returns void
language plpgsql
set search_path = ''
as $$
declare
  uid uuid := tests.get_user_id(email);
begin
  if uid is null then
    raise exception 'tests.authenticate_as: no user with email %', email;
  end if;
  perform set_config('role', 'authenticated', true);
  perform set_config('request.jwt.claims', jsonb_build_object(
    'sub', uid, 'role', 'authenticated', 'email', email, 'aud', 'authenticated',
    'exp', extract(epoch from now() + interval '1 hour')::bigint
  )::text, true);
end
$$;

create or replace function tests.authenticate_as_anon() returns void
language plpgsql
set search_path = ''
as $$
begin
  perform set_config('role', 'anon', true);
  perform set_config('request.jwt.claims', '{"role": "anon"}', true);
end
$$;

create or replace function tests.authenticate_as_service_role() returns void
language plpgsql
set search_path = ''
as $$
begin
  perform set_config('role', 'service_role', true);
  perform set_config('request.jwt.claims', '{"role": "service_role"}', true);
end
$$;

-- Back to the session's own role (the test runner's, `postgres`).
create or replace function tests.clear_authentication() returns void
language plpgsql
set search_path = ''
as $$
begin
  perform set_config('role', 'none', true);
  perform set_config('request.jwt.claims', '', true);
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

select extensions.plan(1);
select extensions.pass('test helpers installed');
select * from extensions.finish();
