-- A finished job's two calls in one: its engine time (worker.record_usage), then its
-- result (worker.complete_task), in one round trip and one transaction instead of two
-- of each. The order stays: the engine time is spent whatever complete_task answers,
-- so it is recorded first, and it is recorded for every answer complete_task gives
-- (the two commit together, so a usage row never lacks the answer it came with).
-- The two functions stay callable on their own and keep their own checks; this one
-- only sequences them, so a later redefinition of either is followed here.
create function worker.settle_task(
  task_id uuid, worker_id text, engine text, gpu_seconds numeric, result jsonb
) returns text
language plpgsql security definer set search_path = '' as $$
begin
  perform worker.record_usage(settle_task.task_id, settle_task.engine, settle_task.gpu_seconds);
  return worker.complete_task(settle_task.task_id, settle_task.worker_id, settle_task.result);
end
$$;

revoke all on function worker.settle_task(uuid, text, text, numeric, jsonb) from public;
grant execute on function worker.settle_task(uuid, text, text, numeric, jsonb) to utter_worker;
