-- Every query the listener sends, by name. Each calls one function of schema
-- `worker` (supabase/migrations/*_worker_api.sql), where the guarantees live.

-- name: read_messages
select msg_id, read_ct, enqueued_at, message
from worker.read_messages(%(queue)s::text, %(visibility_seconds)s::integer, %(quantity)s::integer);

-- name: archive_message
select worker.archive_message(%(queue)s::text, %(msg_id)s::bigint);

-- name: claim_next
select msg_id, enqueued_at, claim
from worker.claim_next(%(queue)s::text, %(visibility_seconds)s::integer, %(quantity)s::integer,
                       %(worker_id)s::text, %(max_attempts)s::integer);

-- name: heartbeat
select worker.heartbeat(%(task_id)s::uuid, %(worker_id)s::text, %(progress)s::real,
                        %(extend_seconds)s::integer);

-- name: record_engine_call
select worker.record_engine_call(%(task_id)s::uuid, %(worker_id)s::text, %(call_id)s::text);

-- name: record_usage
select worker.record_usage(%(task_id)s::uuid, %(engine)s::text, %(gpu_seconds)s::numeric);

-- name: complete_task
select worker.complete_task(%(task_id)s::uuid, %(worker_id)s::text, %(result)s::jsonb);

-- name: record_segment
select worker.record_segment(%(task_id)s::uuid, %(worker_id)s::text, %(segment_index)s::integer,
                             %(segment_count)s::integer, %(object_key)s::text,
                             %(duration_seconds)s::double precision);
-- name: settle_task
select worker.settle_task(%(task_id)s::uuid, %(worker_id)s::text, %(engine)s::text,
                          %(gpu_seconds)s::numeric, %(result)s::jsonb);

-- name: record_transcript
select worker.record_transcript(%(task_id)s::uuid, %(worker_id)s::text, %(transcript)s::text,
                                %(language)s::text);

-- name: record_reference
select worker.record_reference(%(task_id)s::uuid, %(worker_id)s::text, %(sha256)s::text,
                               %(cut_start_seconds)s::real, %(cut_end_seconds)s::real,
                               %(transcript)s::text, %(language)s::text);

-- name: fail_task
select worker.fail_task(%(task_id)s::uuid, %(worker_id)s::text, %(reason)s::text, %(retryable)s::boolean,
                        %(retry_delay_seconds)s::integer, %(max_attempts)s::integer);

-- name: release_task
select worker.release_task(%(task_id)s::uuid, %(worker_id)s::text);

-- name: record_object
select worker.record_object(%(bucket)s::text, %(object_key)s::text, %(size_bytes)s::bigint,
                            %(mimetype)s::text, %(owner_id)s::uuid);

-- name: forget_object
select worker.forget_object(%(bucket)s::text, %(object_key)s::text);

-- The local Storage API's own statements (listener/storage.py), run logged in as
-- supabase_storage_admin, as the Storage API is. Each request is one transaction
-- scoped like supabase/storage src/internal/database/postgres/scope.ts: the caller's
-- role and claims (the service key's: service_role, no sub) and
-- storage.allow_delete_query on.
-- name: storage_api_scope
select set_config('role', 'service_role', true),
       set_config('request.jwt.claim.role', 'service_role', true),
       set_config('request.jwt.claims', '{"role": "service_role"}', true),
       set_config('storage.allow_delete_query', 'true', true);

-- name: storage_api_find_object
select id from storage.objects where bucket_id = %(bucket)s::text and name = %(object_key)s::text;

-- An upsert keeps the row (and its id) and replaces what describes the content.
-- name: storage_api_upsert_object
insert into storage.objects (bucket_id, name, owner, owner_id, metadata, version)
values (%(bucket)s::text, %(object_key)s::text, null, null,
        jsonb_build_object('size', %(size_bytes)s::bigint, 'mimetype', %(mimetype)s::text),
        %(version)s::text)
on conflict (bucket_id, name) do update
set metadata = excluded.metadata, version = excluded.version, updated_at = now(),
    last_accessed_at = now();

-- supabase/storage src/storage/database/pg.ts (deleteObjects).
-- name: storage_api_delete_objects
delete from storage.objects where bucket_id = %(bucket)s::text and name = any(%(object_keys)s::text[])
returning name;

-- name: queue_metrics
select queue, waiting, oldest_seconds, total_sent from worker.queue_metrics();

-- name: claim_checkouts
select msg_id, enqueued_at, claim
from worker.claim_checkouts(%(visibility_seconds)s::integer, %(quantity)s::integer,
                            %(max_attempts)s::integer);

-- name: record_checkout
select worker.record_checkout(%(purchase_id)s::uuid, %(session_id)s::text, %(url)s::text,
                              %(expires_at)s::timestamptz);

-- name: fail_checkout
select worker.fail_checkout(%(purchase_id)s::uuid, %(reason)s::text, %(retryable)s::boolean,
                            %(retry_delay_seconds)s::integer, %(max_attempts)s::integer);

-- name: record_transcription
select worker.record_transcription(%(task_id)s::uuid, %(worker_id)s::text, %(transcript)s::text,
                                   %(language)s::text, %(duration_seconds)s::real);

-- name: status_queues
select queue, waiting, hidden, oldest_msg_id, oldest_task_id, oldest_enqueued_at,
       oldest_age_seconds, oldest_read_count
from worker.status_queues();

-- name: status_in_flight
select worker_id, running, by_type, oldest_started_at, last_heartbeat_at
from worker.status_in_flight();

-- name: status_failures
select type, reason, failures, last_failed_at
from worker.status_failures(make_interval(mins => %(minutes)s::integer));

-- name: status_spend
select scope, user_id, used_gpu_seconds, budget_gpu_seconds, tasks
from worker.status_spend(%(top_users)s::integer);
