-- Helpers for Utter's own suites, installed once and kept (no rollback) like 00000.
-- They stand in for what is not a user's insert: Supabase Storage accepting an upload,
-- the listener claiming and finishing a task, a balance spent earlier. They run as
-- their owner (security definer) so a test can call them while acting as a user.

-- The object Supabase Storage records when a user uploads a voice's reference
-- recording; returns the voice id the key was made for.
create or replace function tests.upload_reference(
  email text, voice_id uuid default gen_random_uuid(), extension text default 'wav'
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  uid uuid := tests.get_user_id(email);
begin
  insert into storage.objects (bucket_id, name, owner, owner_id)
  values ('references', uid || '/' || voice_id || '/reference.' || extension, uid, uid::text);
  return voice_id;
end
$$;

create or replace function tests.reference_key(email text, voice_id uuid, extension text default 'wav')
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select tests.get_user_id(email) || '/' || voice_id || '/reference.' || extension
$$;

-- The newest task of a generation, design preview or voice.
create or replace function tests.task_for(subject_id uuid) returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select t.id from public.tasks t
  where subject_id in (t.generation_id, t.design_preview_id, t.voice_id)
  order by t.created_at desc, t.id
  limit 1
$$;

-- The listener's claim, with the queue and message the task records.
create or replace function tests.claim(task_id uuid, worker_id text default 'test-worker')
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select worker.claim_task(t.type, t.msg_id, t.id, worker_id, 3)
  from public.tasks t where t.id = task_id
$$;

-- The listener storing a result (2.5 s of audio, made in 1 s) and settling the task.
create or replace function tests.complete(task_id uuid, worker_id text default 'test-worker')
returns text
language sql
security definer
set search_path = ''
as $$
  select worker.complete_task(task_id, worker_id,
                              '{"duration_seconds": 2.5, "generation_seconds": 1.0}'::jsonb)
$$;

-- A cloned voice the listener has validated: uploaded, inserted, claimed, completed.
-- Call it unauthenticated or as `email` (the insert is that user's).
create or replace function tests.make_ready_voice(
  email text, name text default 'Ready voice', voice_id uuid default gen_random_uuid()
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  task_id uuid;
begin
  perform tests.upload_reference(email, voice_id);
  insert into public.voices (id, user_id, name, language, reference_object_key, reference_transcript)
  values (voice_id, tests.get_user_id(email), name, 'English',
          tests.reference_key(email, voice_id), 'This is what the reference recording says.');
  task_id := tests.task_for(voice_id);
  perform tests.claim(task_id);
  perform tests.complete(task_id);
  return voice_id;
end
$$;

-- A design preview the listener has finished (charged 1 credit).
create or replace function tests.make_completed_preview(
  email text, preview_id uuid default gen_random_uuid()
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  task_id uuid;
begin
  insert into public.design_previews (id, user_id, instruct, text, language)
  values (preview_id, tests.get_user_id(email), 'A warm, slow baritone',
          'Hello from a designed voice.', 'English');
  task_id := tests.task_for(preview_id);
  perform tests.claim(task_id);
  perform tests.complete(task_id);
  return preview_id;
end
$$;

-- A balance left after earlier spending, kept consistent with the ledger (a charge
-- row with no task).
create or replace function tests.set_credits(email text, credits integer) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  uid uuid := tests.get_user_id(email);
  delta integer := credits - (select p.credits from public.profiles p where p.id = uid);
begin
  insert into private.credit_ledger (user_id, delta, reason) values (uid, delta, 'charge');
  update public.profiles p set credits = p.credits + delta where p.id = uid;
end
$$;

create or replace function tests.credits(email text) returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select p.credits from public.profiles p where p.id = tests.get_user_id(email)
$$;

-- The invariant every credit scenario must keep: each balance is its ledger's sum.
create or replace function tests.credits_match_ledger() returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select not exists (
    select 1 from public.profiles p
    where p.credits is distinct from
          (select sum(l.delta) from private.credit_ledger l where l.user_id = p.id)
  )
$$;

create or replace function tests.ledger_rows(email text, reason text) returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select count(*)::integer from private.credit_ledger l
  where l.user_id = tests.get_user_id(email) and l.reason = ledger_rows.reason
$$;

-- Messages waiting (visible or not) in a queue, and archived ones.
create or replace function tests.pgmq_rows(table_name text) returns integer
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  n integer;
begin
  execute format('select count(*)::integer from pgmq.%I', table_name) into n;
  return n;
end
$$;

create or replace function tests.queued(queue text) returns integer
language sql stable set search_path = '' as $$ select tests.pgmq_rows('q_' || queue) $$;

create or replace function tests.archived(queue text) returns integer
language sql stable set search_path = '' as $$ select tests.pgmq_rows('a_' || queue) $$;

-- Broadcasts sent to a user's private topic.
create or replace function tests.broadcasts(email text) returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select count(*)::integer from realtime.messages m
  where m.topic = 'user:' || tests.get_user_id(email) and m.extension = 'broadcast' and m.private
$$;

-- Runs `sql` as `role_name` and returns 'ok' or 'SQLSTATE: message', for roles that
-- cannot reach pgTAP's schema (utter_worker). Only for the test runner's own role:
-- it switches back to the session user afterwards.
create or replace function tests.outcome_as(role_name text, sql text) returns text
language plpgsql
set search_path = ''
as $$
declare
  outcome text := 'ok';
begin
  perform set_config('role', role_name, true);
  begin
    execute sql;
  exception when others then
    outcome := sqlstate || ': ' || sqlerrm;
  end;
  perform set_config('role', 'none', true);
  return outcome;
end
$$;

-- Scenarios that need more generations or previews queued at once than a tier allows
-- (the tier caps have their own suite, 02320): every tier may run `jobs` at once.
-- Only for the test runner's own role, inside the test's transaction.
create or replace function tests.allow_concurrent_jobs(jobs integer) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.tier_limits set max_concurrent_jobs = jobs;
end
$$;

-- Load tests and benchmarks that start more work per user per minute than the request
-- limits allow (the limits have their own suite, 02320).
create or replace function tests.allow_requests(requests integer) returns void
language plpgsql
set search_path = ''
as $$
begin
  update private.request_limits set max_requests = requests;
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;
revoke execute on function tests.outcome_as(text, text) from anon, authenticated, service_role;
revoke execute on function tests.allow_concurrent_jobs(integer) from anon, authenticated, service_role;
revoke execute on function tests.allow_requests(integer) from anon, authenticated, service_role;

select extensions.plan(1);
select extensions.ok(
  to_regprocedure('tests.make_ready_voice(text, text, uuid)') is not null,
  'Utter test helpers installed');
select * from extensions.finish();
