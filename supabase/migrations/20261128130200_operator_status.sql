-- The operator's view (`python -m listener status`): read-only summaries the listener's
-- role may call, so the status command needs no credentials beyond the listener's own
-- and can read nothing but these aggregates.

-- Per queue: messages waiting (visible now), hidden (claimed, or delayed for a retry),
-- and the oldest waiting message with the task (or, for checkout, the purchase) it
-- names. pgmq.q_checkout and q_transcribe come with later migrations; PL/pgSQL
-- resolves them per call.
create function worker.status_queues()
returns table (queue text, waiting bigint, hidden bigint, oldest_msg_id bigint,
               oldest_task_id text, oldest_enqueued_at timestamptz, oldest_age_seconds integer,
               oldest_read_count integer)
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
    with messages as (
      select 'generate'::text as queue, m.msg_id, m.vt, m.enqueued_at, m.read_ct, m.message from pgmq.q_generate m
      union all
      select 'design_preview', m.msg_id, m.vt, m.enqueued_at, m.read_ct, m.message from pgmq.q_design_preview m
      union all
      select 'clone', m.msg_id, m.vt, m.enqueued_at, m.read_ct, m.message from pgmq.q_clone m
      union all
      select 'storage_cleanup', m.msg_id, m.vt, m.enqueued_at, m.read_ct, m.message from pgmq.q_storage_cleanup m
      union all
      select 'transcribe', m.msg_id, m.vt, m.enqueued_at, m.read_ct, m.message from pgmq.q_transcribe m
      union all
      select 'checkout', m.msg_id, m.vt, m.enqueued_at, m.read_ct, m.message from pgmq.q_checkout m
    ),
    oldest as (
      select distinct on (m.queue) m.queue, m.msg_id,
             coalesce(m.message ->> 'task_id', m.message ->> 'purchase_id') as task_id,
             m.enqueued_at, m.read_ct
      from messages m where m.vt <= clock_timestamp()
      order by m.queue, m.msg_id
    )
    select q.name, count(m.msg_id) filter (where m.vt <= clock_timestamp()), count(m.msg_id) filter (where m.vt > clock_timestamp()),
           o.msg_id, o.task_id, o.enqueued_at,
           extract(epoch from now() - o.enqueued_at)::integer, o.read_ct
    from unnest(array['generate', 'design_preview', 'clone', 'transcribe', 'storage_cleanup', 'checkout']) with ordinality q(name, position)
    left join messages m on m.queue = q.name
    left join oldest o on o.queue = q.name
    group by q.name, q.position, o.msg_id, o.task_id, o.enqueued_at, o.read_ct
    order by q.position;
end
$$;

-- Running tasks per listener (claimed_by is the listener's worker id).
create function worker.status_in_flight()
returns table (worker_id text, running bigint, by_type jsonb, oldest_started_at timestamptz,
               last_heartbeat_at timestamptz)
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
    select per_type.claimed_by, sum(per_type.n)::bigint, jsonb_object_agg(per_type.type, per_type.n),
           min(per_type.started), max(per_type.heartbeat)
    from (select t.claimed_by, t.type, count(*) as n, min(t.started_at) as started,
                 max(t.heartbeat_at) as heartbeat
          from public.tasks t
          where t.status = 'processing'
          group by t.claimed_by, t.type) per_type
    group by per_type.claimed_by
    order by 2 desc, 1;
end
$$;

-- Tasks that failed for good within `since`, grouped by type and reason.
create function worker.status_failures(since interval default interval '1 hour')
returns table (type text, reason text, failures bigint, last_failed_at timestamptz)
language plpgsql stable security definer set search_path = '' as $$
begin
  if since is null or since <= interval '0' then
    raise exception using errcode = '22023',
      message = format('status_failures needs a positive interval, got %s', since);
  end if;
  return query
    select t.type, left(coalesce(t.error, '(no reason)'), 200), count(*), max(t.ended_at)
    from public.tasks t
    where t.status = 'failed' and t.ended_at >= now() - since
    group by 1, 2
    order by 3 desc, 4 desc;
end
$$;

-- Today's (UTC) engine seconds against the budgets: the service's total, then the
-- `top_users` biggest spenders (user ids only).
create function worker.status_spend(top_users integer default 5)
returns table (scope text, user_id uuid, used_gpu_seconds numeric, budget_gpu_seconds numeric,
               tasks bigint)
language plpgsql stable security definer set search_path = '' as $$
declare
  today date := private.usage_day();
begin
  if top_users is null or top_users < 0 then
    raise exception using errcode = '22023',
      message = format('status_spend needs top_users >= 0, got %s', top_users);
  end if;
  return query
    select 'global'::text, null::uuid, coalesce(sum(d.gpu_seconds), 0),
           (select b.daily_gpu_seconds from private.usage_budgets b where b.scope = 'global'),
           coalesce(sum(d.tasks), 0)::bigint
    from private.daily_usage d where d.day = today;
  return query
    select 'per_user'::text, d.user_id, d.gpu_seconds,
           (select b.daily_gpu_seconds from private.usage_budgets b where b.scope = 'per_user'),
           d.tasks::bigint
    from private.daily_usage d where d.day = today
    order by d.gpu_seconds desc, d.user_id
    limit top_users;
end
$$;

revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on all functions in schema worker to utter_worker;
