-- Cost controls: engine time recorded per task, daily budgets checked at insert time,
-- storage bytes per user.
--
-- The unit is the engine second: the wall time the listener spent in the engine for a
-- task's completed attempt, whatever the engine (on Modal it is what the GPU bills).
-- A budget caps the engine seconds of one UTC day, per user and for the whole
-- service. Work already queued when a budget is reached still runs, so a day can
-- overshoot by at most what is queued then (each user has at most
-- private.max_unfinished_tasks() unfinished tasks).
--
-- Errors a client can cause (PostgREST maps PTxxx to HTTP status xxx):
--   PT403 the user's own daily budget is spent (until 00:00 UTC)
--   PT503 the service's daily budget is spent (until 00:00 UTC)

-- One row per task whose attempt completed: which engine, how many seconds.
create table private.task_usage (
  task_id uuid primary key references public.tasks (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  task_type text not null,
  engine text not null constraint task_usage_engine_named check (char_length(engine) between 1 and 40),
  gpu_seconds numeric(12, 3) not null constraint task_usage_seconds_not_negative check (gpu_seconds >= 0),
  recorded_at timestamptz not null default now()
);
comment on table private.task_usage is 'Engine seconds per completed task (see worker.record_usage); what daily budgets count.';

-- The day's running totals, so the insert-time check reads one or two rows instead of
-- summing the day's tasks. Kept by worker.record_usage in the same transaction.
create table private.daily_usage (
  day date not null,
  -- No foreign key: a deleted account's spend still counts against today's global budget.
  user_id uuid not null,
  gpu_seconds numeric(14, 3) not null default 0,
  tasks integer not null default 0,
  primary key (day, user_id)
);
comment on table private.daily_usage is 'Engine seconds per user per UTC day, summed from private.task_usage.';

-- The budgets, one row per scope; null means no limit. Operators change them with
-- `update private.usage_budgets set daily_gpu_seconds = ... where scope = ...`.
create table private.usage_budgets (
  scope text primary key constraint usage_budgets_scope check (scope in ('per_user', 'global')),
  daily_gpu_seconds numeric(14, 3) constraint usage_budgets_positive check (daily_gpu_seconds > 0),
  updated_at timestamptz not null default now()
);
comment on table private.usage_budgets is 'Daily engine-second budgets: per_user (each user) and global (all users together); null = unlimited.';
insert into private.usage_budgets (scope, daily_gpu_seconds) values
  ('per_user', 1800),   -- half an hour of engine time per user per day
  ('global', 36000);    -- ten hours for the whole service per day

alter table private.task_usage enable row level security;
alter table private.daily_usage enable row level security;
alter table private.usage_budgets enable row level security;

create function private.usage_day() returns date
language plpgsql stable set search_path = '' as $$
begin
  return (now() at time zone 'utc')::date;
end
$$;

-- Records the engine and its seconds for a task's completed attempt; called by the
-- listener just before worker.complete_task. Once per task: a repeated call (a retried
-- settle) replaces the earlier figure instead of adding to it. Returns false when the
-- task is unknown.
create function worker.record_usage(task_id uuid, engine text, gpu_seconds numeric) returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  previous numeric;
  today date := private.usage_day();
begin
  if engine is null or char_length(engine) not between 1 and 40 then
    raise exception using errcode = '22023',
      message = format('record_usage needs an engine name of 1 to 40 characters, got %L', engine);
  end if;
  if gpu_seconds is null or gpu_seconds < 0 or gpu_seconds = 'NaN'::numeric then
    raise exception using errcode = '22023',
      message = format('record_usage needs gpu_seconds >= 0, got %s', coalesce(gpu_seconds::text, 'null'));
  end if;
  select * into task from public.tasks t where t.id = record_usage.task_id;
  if not found then
    return false;
  end if;
  select u.gpu_seconds into previous from private.task_usage u
  where u.task_id = task.id for update;
  insert into private.task_usage (task_id, user_id, task_type, engine, gpu_seconds)
  values (task.id, task.user_id, task.type, record_usage.engine, record_usage.gpu_seconds)
  on conflict on constraint task_usage_pkey do update
  set engine = excluded.engine, gpu_seconds = excluded.gpu_seconds, recorded_at = now();
  insert into private.daily_usage as d (day, user_id, gpu_seconds, tasks)
  values (today, task.user_id, record_usage.gpu_seconds, 1)
  on conflict on constraint daily_usage_pkey do update
  set gpu_seconds = d.gpu_seconds + excluded.gpu_seconds - coalesce(previous, 0),
      tasks = d.tasks + case when previous is null then 1 else 0 end;
  return true;
end
$$;

-- Refuses new GPU work once today's budget is spent. Its own BEFORE INSERT trigger on
-- the tables whose inserts start GPU work; named to fire after the table's own
-- `*_before_insert` trigger, which has settled new.user_id (triggers fire by name).
-- Voice clones are not counted: their validation runs on the listener's CPU.
create function private.enforce_daily_budget() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  today date := private.usage_day();
  user_budget numeric;
  global_budget numeric;
  used numeric;
begin
  select b.daily_gpu_seconds into user_budget from private.usage_budgets b where b.scope = 'per_user';
  select b.daily_gpu_seconds into global_budget from private.usage_budgets b where b.scope = 'global';
  if global_budget is not null then
    select coalesce(sum(d.gpu_seconds), 0) into used from private.daily_usage d where d.day = today;
    if used >= global_budget then
      raise exception using errcode = 'PT503',
        message = format('the service''s daily GPU budget is spent (%s of %s seconds today)',
                         round(used), round(global_budget)),
        hint = 'New work is accepted again from 00:00 UTC.';
    end if;
  end if;
  if user_budget is not null then
    select coalesce(d.gpu_seconds, 0) into used from private.daily_usage d
    where d.day = today and d.user_id = new.user_id;
    if coalesce(used, 0) >= user_budget then
      raise exception using errcode = 'PT403',
        message = format('your daily GPU budget is spent (%s of %s seconds today)',
                         round(used), round(user_budget)),
        hint = 'New work is accepted again from 00:00 UTC.';
    end if;
  end if;
  return new;
end
$$;
create trigger generations_budget_before_insert before insert on public.generations
  for each row execute function private.enforce_daily_budget();
create trigger design_previews_budget_before_insert before insert on public.design_previews
  for each row execute function private.enforce_daily_budget();

-- Storage bytes per user, from the object metadata Storage keeps. Every key starts
-- with its owner's id (docs/client-contract.md), which holds also for objects the
-- listener wrote with the service role (no `owner`). security_invoker: a user sees
-- only the objects the storage policies let them read, i.e. their own.
create view public.storage_usage with (security_invoker = true) as
select (storage.foldername(o.name))[1]::uuid as user_id,
       o.bucket_id as bucket,
       count(*) as objects,
       coalesce(sum((o.metadata ->> 'size')::bigint), 0)::bigint as bytes
from storage.objects o
where o.bucket_id in ('references', 'generations')
  and (storage.foldername(o.name))[1] ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
group by 1, 2;
comment on view public.storage_usage is 'Objects and bytes per user and bucket; each user sees their own rows.';
revoke all on public.storage_usage from anon, authenticated;
grant select on public.storage_usage to authenticated;

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on all functions in schema worker to utter_worker;
