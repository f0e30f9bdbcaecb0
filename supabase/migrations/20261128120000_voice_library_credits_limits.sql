-- What the live app offers beyond clone, design and generate, as data: voices a user
-- can rename, favourite, search and sort by use; a credit activity with the balance
-- after each change; a rate card and tier limits readable by everyone; per-user
-- request counters; settings an operator may change; dismissed tasks; uploads the
-- sweeper has queued for removal. The rules that use them are in
-- 20261128120100_rules_for_limits_and_inputs.sql, the grants in
-- 20261128120200_client_access_for_library_and_limits.sql.

create extension if not exists pg_trgm with schema extensions;

-- Settings an operator may change with a plain UPDATE (one row). -----------------

create table private.settings (
  singleton boolean primary key default true constraint settings_one_row check (singleton),
  -- Credits a new account starts with; an anonymous sign-up (auth.users.is_anonymous)
  -- gets its own amount, 0 by default, since anonymous accounts drained free credits.
  -- An anonymous account that becomes a permanent one gets the difference then.
  signup_credits integer not null default 100 constraint settings_signup_credits check (signup_credits >= 0),
  anonymous_signup_credits integer not null default 0
    constraint settings_anonymous_signup_credits check (anonymous_signup_credits >= 0),
  -- Unfinished tasks of any type a user may have at once (clones included).
  max_unfinished_tasks integer not null default 10 constraint settings_max_unfinished check (max_unfinished_tasks > 0),
  -- An upload under references/<uid>/<voice_id>/ that no voice was inserted for
  -- within this time is removed by private.sweep_abandoned_uploads.
  abandoned_upload_after interval not null default '24 hours'
    constraint settings_abandoned_upload_after check (abandoned_upload_after > interval '0')
);
insert into private.settings default values;
comment on table private.settings is
  'Operator settings, one row: sign-up grants, the unfinished-task cap, the abandoned-upload window.';

-- Prices, one home: the triggers charge what this table says. ----------------------

create table public.rate_card (
  task_type text primary key constraint rate_card_task_type check (task_type in ('generate', 'design_preview', 'clone')),
  credits integer not null constraint rate_card_credits check (credits >= 0),
  -- Null: a flat price per task. Otherwise `credits` per started block of this many
  -- characters of text (at least one block).
  per_characters integer constraint rate_card_per_characters check (per_characters > 0),
  description text not null
);
comment on table public.rate_card is 'What each kind of work costs; the insert triggers charge from here.';
insert into public.rate_card (task_type, credits, per_characters, description) values
  ('generate', 1, 500, '1 credit per started 500 characters of text'),
  ('design_preview', 1, null, '1 credit per design preview'),
  ('clone', 0, null, 'cloning a voice is free');

-- Tiers: how much work may run at once. -------------------------------------------

create table public.tier_limits (
  tier text primary key,
  -- Generations and design previews queued or running at once (the GPU work a user
  -- waits for); clones count only against private.settings.max_unfinished_tasks.
  max_concurrent_jobs integer not null constraint tier_limits_max_concurrent_jobs check (max_concurrent_jobs > 0),
  description text not null
);
comment on table public.tier_limits is 'Per-tier limits; profiles.tier names the row that applies to a user.';
insert into public.tier_limits (tier, max_concurrent_jobs, description) values
  ('free', 2, 'every account starts here'),
  ('paid', 4, 'accounts that have bought credits');

-- A user's tier is a column of their profile, set by billing (the service role or
-- the database owner), never by the client.
alter table public.profiles
  add column tier text not null default 'free' references public.tier_limits (tier);

-- Request rate limits on the inserts that start work: fixed windows per user and
-- task type, counted in private.request_counts. ------------------------------------

create table private.request_limits (
  task_type text primary key constraint request_limits_task_type check (task_type in ('generate', 'design_preview', 'clone')),
  max_requests integer not null constraint request_limits_max_requests check (max_requests > 0),
  per_window interval not null constraint request_limits_per_window check (per_window > interval '0')
);
comment on table private.request_limits is
  'At most max_requests inserts of a task type per user in each window of per_window.';
insert into private.request_limits (task_type, max_requests, per_window) values
  ('generate', 30, '1 minute'),
  ('design_preview', 20, '1 minute'),
  ('clone', 10, '1 hour');

create table private.request_counts (
  user_id uuid not null references auth.users (id) on delete cascade,
  task_type text not null,
  window_start timestamptz not null,
  requests integer not null,
  primary key (user_id, task_type, window_start)
);
comment on table private.request_counts is
  'Requests per user, task type and window; windows older than a day are pruned by private.sweep.';
create index request_counts_window_start on private.request_counts (window_start);

-- Credit activity: each ledger row records the balance it left. -------------------

-- Existing rows get their balance once; the append-only trigger is off for that
-- statement only. From here on private.before_ledger_insert fills it.
alter table private.credit_ledger add column balance_after integer;
alter table private.credit_ledger disable trigger credit_ledger_append_only;
update private.credit_ledger l
set balance_after = b.balance
from (select id, sum(delta) over (partition by user_id order by created_at, id) as balance
      from private.credit_ledger) b
where b.id = l.id;
alter table private.credit_ledger enable trigger credit_ledger_append_only;
alter table private.credit_ledger alter column balance_after set not null;
-- The sum of a user's rows, read under the profile's lock by each new row.
create index credit_ledger_user_delta on private.credit_ledger (user_id) include (delta);
-- One sign-up grant per account, however it became permanent.
create unique index credit_ledger_one_signup_grant on private.credit_ledger (user_id)
  where reason = 'signup_grant';

-- Voices: favourite, sorting by use, search by name. ---------------------------------

alter table public.voices
  add column is_favorite boolean not null default false,
  -- Generations started with the voice (deleting a generation does not undo its use).
  add column generation_count integer not null default 0
    constraint voices_generation_count_not_negative check (generation_count >= 0),
  add column last_used_at timestamptz;
update public.voices v
set generation_count = u.uses, last_used_at = u.last_used
from (select voice_id, count(*)::integer as uses, max(created_at) as last_used
      from public.generations where voice_id is not null group by voice_id) u
where u.voice_id = v.id;
create index voices_user_favorite on public.voices (user_id, is_favorite desc, created_at desc, id);
create index voices_user_most_used on public.voices (user_id, generation_count desc, id);
create index voices_user_last_used on public.voices (user_id, last_used_at desc nulls last, id);
-- `ilike '%part%'` on the name (supabase-js `.ilike('name', ...)`) uses this index.
create index voices_name_trigram on public.voices using gin (name extensions.gin_trgm_ops);

-- Tasks: dismissed from the default list, kept for accounting. ------------------------

alter table public.tasks add column dismissed_at timestamptz;
alter table public.tasks add constraint tasks_dismissed_when_ended
  check (dismissed_at is null or ended_at is not null);
create index tasks_user_listed on public.tasks (user_id, created_at desc, id) where dismissed_at is null;

-- Uploads the sweeper queued for removal, by object id, so the same upload is queued
-- once and a voice cannot be inserted from an upload on its way out.
create table private.upload_sweeps (
  object_id uuid primary key,
  bucket text not null,
  object_key text not null,
  queued_at timestamptz not null default now()
);
