-- The queue check of every claim (claim_next once per batch, claim_task once per
-- message) called worker.read_messages(queue, 0, 0) so that it followed the worker's
-- queue list. That "read of nothing" still ran pgmq.read, whose dynamic SQL is planned
-- on every call: about a tenth of one listener's database time per job. The list lives
-- in private.check_worker_queue (worker.read_messages checks through it too), so the
-- check now calls it directly and reads nothing.
create or replace function private.check_task_queue(queue text) returns void
language plpgsql security definer set search_path = '' as $$
begin
  if queue = 'storage_cleanup' then
    raise exception using errcode = '22023',
      message = 'queue ''storage_cleanup'' carries no tasks; read it with read_messages';
  end if;
  perform private.check_worker_queue(queue);
end
$$;
