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

-- name: complete_task
select worker.complete_task(%(task_id)s::uuid, %(worker_id)s::text, %(result)s::jsonb);

-- name: record_transcript
select worker.record_transcript(%(task_id)s::uuid, %(worker_id)s::text, %(transcript)s::text,
                                %(language)s::text);

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
