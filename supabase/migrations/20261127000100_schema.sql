-- Utter's tables. The browser writes only the columns the client contract names
-- (see docs/client-contract.md); everything else is owned by triggers and by the
-- listener's functions in schema `worker`.

create schema if not exists private;  -- internals: never exposed, no client grants
create schema if not exists worker;   -- the listener's API: role utter_worker only
revoke all on schema private from public;
revoke all on schema worker from public;

-- The listener's own login role: executes `worker.*` and nothing else. Its password
-- is set outside migrations (locally by devstack, on Supabase by the operator).
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'utter_worker') then
    create role utter_worker login noinherit;
  end if;
end
$$;
grant usage on schema worker to utter_worker;

-- Public, read-only reference data.
create table public.languages (
  name text primary key,
  sort_order smallint not null unique,
  allowed_for_design boolean not null
);
comment on table public.languages is 'Languages the models speak; "Auto" lets the model detect it (not for design).';
insert into public.languages (name, sort_order, allowed_for_design) values
  ('Auto', 0, false), ('Chinese', 1, true), ('English', 2, true), ('Japanese', 3, true),
  ('Korean', 4, true), ('German', 5, true), ('French', 6, true), ('Russian', 7, true),
  ('Portuguese', 8, true), ('Spanish', 9, true), ('Italian', 10, true);

create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  credits integer not null default 0 constraint profiles_credits_not_negative check (credits >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.profiles is 'One per auth user, created with it; credits change only through private.credit_ledger.';

create table public.design_previews (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  instruct text not null
    constraint design_previews_instruct_length check (char_length(instruct) between 1 and 500),
  text text not null
    constraint design_previews_text_length check (char_length(text) between 1 and 500),
  language text not null references public.languages (name)
    constraint design_previews_language_explicit check (language <> 'Auto'),
  status text not null default 'pending'
    constraint design_previews_status check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  audio_object_key text,
  duration_seconds real,
  error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint design_previews_audio_when_completed
    check ((status = 'completed') = (audio_object_key is not null))
);

create table public.voices (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  name text not null constraint voices_name_length check (char_length(btrim(name)) between 1 and 100),
  source text not null constraint voices_source check (source in ('uploaded', 'designed')),
  language text not null references public.languages (name),
  -- Key in bucket `references` of the audio the user uploaded (clone) or of the
  -- preview audio the voice was saved from (design).
  reference_object_key text not null,
  -- Key in bucket `references` of the validated, normalised WAV the engines read.
  normalized_object_key text,
  reference_transcript text not null
    constraint voices_transcript_length check (char_length(btrim(reference_transcript)) >= 10),
  reference_duration_seconds real,
  description text,
  design_preview_id uuid unique references public.design_previews (id) on delete set null,
  status text not null default 'pending'
    constraint voices_status check (status in ('pending', 'ready', 'failed', 'cancelled')),
  error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint voices_ready_has_audio check (status <> 'ready' or normalized_object_key is not null)
);

create table public.generations (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  voice_id uuid references public.voices (id) on delete set null,
  voice_name text not null,  -- kept for history when the voice is deleted
  text text not null constraint generations_text_length check (char_length(text) between 1 and 5000),
  language text not null references public.languages (name),
  regenerated_from uuid references public.generations (id) on delete set null,
  status text not null default 'pending'
    constraint generations_status check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  audio_object_key text,
  duration_seconds real,
  generation_seconds real,
  error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  constraint generations_audio_when_completed
    check ((status = 'completed') = (audio_object_key is not null))
);

-- One task per unit of GPU work: the canonical state machine (see private.task_transition_allowed).
create table public.tasks (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  type text not null constraint tasks_type check (type in ('generate', 'design_preview', 'clone')),
  status text not null default 'pending'
    constraint tasks_status check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  generation_id uuid references public.generations (id) on delete set null,
  design_preview_id uuid references public.design_previews (id) on delete set null,
  voice_id uuid references public.voices (id) on delete set null,
  cost integer not null default 0 constraint tasks_cost_not_negative check (cost >= 0),
  progress real not null default 0 constraint tasks_progress_range check (progress between 0 and 1),
  error text,
  cancel_requested_at timestamptz,
  attempts integer not null default 0,
  msg_id bigint,
  engine_call_id text,
  claimed_by text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  heartbeat_at timestamptz,
  ended_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint tasks_one_subject check (
    (type = 'generate' and design_preview_id is null and voice_id is null)
    or (type = 'design_preview' and generation_id is null and voice_id is null)
    or (type = 'clone' and generation_id is null and design_preview_id is null)
  ),
  constraint tasks_ended_when_terminal
    check ((status in ('completed', 'failed', 'cancelled')) = (ended_at is not null))
);

-- Append-only: every change of a balance is a row here; profiles.credits is its sum.
create table private.credit_ledger (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  task_id uuid references public.tasks (id) on delete set null,
  delta integer not null,
  reason text not null constraint credit_ledger_reason check (reason in ('signup_grant', 'charge', 'refund')),
  created_at timestamptz not null default now()
);
-- A task is charged at most once and refunded at most once.
create unique index credit_ledger_one_charge_per_task on private.credit_ledger (task_id)
  where reason = 'charge';
create unique index credit_ledger_one_refund_per_task on private.credit_ledger (task_id)
  where reason = 'refund';
create index credit_ledger_user_id on private.credit_ledger (user_id, created_at desc);

-- Every RLS predicate (user_id = auth.uid()) and every list the app shows (newest first, paged).
create index voices_user_created on public.voices (user_id, created_at desc, id);
create index generations_user_created on public.generations (user_id, created_at desc, id);
create index generations_voice on public.generations (voice_id);
create index generations_regenerated_from on public.generations (regenerated_from);
create index design_previews_user_created on public.design_previews (user_id, created_at desc, id);
create index tasks_user_created on public.tasks (user_id, created_at desc, id);
create index tasks_user_unfinished on public.tasks (user_id) where status in ('pending', 'processing');
create index tasks_generation on public.tasks (generation_id);
create index tasks_design_preview on public.tasks (design_preview_id);
create index tasks_voice on public.tasks (voice_id);
