-- The task state machine: illegal transitions are refused whoever writes them, and the
-- listener's functions (called here as utter_worker, to prove the grant) move tasks
-- only along legal edges and are safe to repeat. Values a worker call needs or returns
-- travel in transaction-local settings (test.*), since utter_worker can read no table
-- and reach no pgTAP function.
--   alice a11ce000-...-000000000001, ready voice ...a001; generations:
--   ...a010 pending, ...a011 completed, ...a012 failed, ...a013 cancelled,
--   ...a020 the worker walk-through, ...a030 retries, ...a040 crashes, ...a050 fails at once
begin;
select plan(72);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('machine-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.make_ready_voice('machine-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
insert into public.generations (id, user_id, voice_id, text, language)
select ('a11ce000-0000-4000-8000-00000000a0' || n)::uuid, 'a11ce000-0000-4000-8000-000000000001',
       'a11ce000-0000-4000-8000-00000000a001', 'Generation ' || n, 'English'
from unnest(array['10', '11', '12', '13', '20', '30', '40', '50']) n;
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a011'));
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a011'));
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a012'));
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a012'), 'test-worker', 'engine exploded', false, 0, 3);
update public.tasks set cancel_requested_at = now() where generation_id = 'a11ce000-0000-4000-8000-00000000a013';

select results_eq(
  $$ select generation_id, status from public.tasks
     where generation_id in ('a11ce000-0000-4000-8000-00000000a010', 'a11ce000-0000-4000-8000-00000000a011',
                             'a11ce000-0000-4000-8000-00000000a012', 'a11ce000-0000-4000-8000-00000000a013')
     order by generation_id $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a010'::uuid, 'pending'), ('a11ce000-0000-4000-8000-00000000a011', 'completed'),
            ('a11ce000-0000-4000-8000-00000000a012', 'failed'), ('a11ce000-0000-4000-8000-00000000a013', 'cancelled') $$,
  'one task in each of pending, completed, failed and cancelled');

-- Illegal transitions, written directly (as the table owner) ------------------------
select throws_ok(format($$ update public.tasks set status = 'completed' where id = %L $$, t.id),
  '22023', format('illegal task transition pending -> completed for task %s', t.id),
  'pending -> completed is refused (only a claimed task completes)')
from (select tests.task_for('a11ce000-0000-4000-8000-00000000a010') id) t;
select throws_ok(format($$ update public.tasks set status = %L where id = %L $$, s.status, t.id),
  '22023', format('task %s already ended (completed); it cannot change', t.id),
  format('completed -> %s is refused', s.status))
from (select tests.task_for('a11ce000-0000-4000-8000-00000000a011') id) t,
     unnest(array['pending', 'processing', 'failed', 'cancelled']) s (status);
select throws_ok(format($$ update public.tasks set error = 'rewritten history' where id = %L $$, t.id),
  '22023', format('task %s already ended (completed); it cannot change', t.id),
  'a completed task''s other columns cannot change either')
from (select tests.task_for('a11ce000-0000-4000-8000-00000000a011') id) t;
select throws_ok(format($$ update public.tasks set status = %L where id = %L $$, s.status, t.id),
  '22023', format('task %s already ended (failed); it cannot change', t.id),
  format('failed -> %s is refused', s.status))
from (select tests.task_for('a11ce000-0000-4000-8000-00000000a012') id) t,
     unnest(array['pending', 'processing']) s (status);
select throws_ok(format($$ update public.tasks set status = %L where id = %L $$, s.status, t.id),
  '22023', format('task %s already ended (cancelled); it cannot change', t.id),
  format('cancelled -> %s is refused', s.status))
from (select tests.task_for('a11ce000-0000-4000-8000-00000000a013') id) t,
     unnest(array['processing', 'pending', 'completed']) s (status);

-- The worker walk-through: claim, heartbeat, re-claim, release, complete -------------
select set_config('test.task', t.id::text, true), set_config('test.msg', t.msg_id::text, true)
from public.tasks t where t.generation_id = 'a11ce000-0000-4000-8000-00000000a020';

set local role utter_worker;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-1', 3)::text, true);
reset role;
select is(current_setting('test.claim')::jsonb ->> 'outcome', 'claimed', 'utter_worker claims a pending task');
select is(current_setting('test.claim')::jsonb -> 'job',
  jsonb_build_object(
    'task_id', current_setting('test.task'), 'type', 'generate', 'user_id', 'a11ce000-0000-4000-8000-000000000001',
    'attempt', 1, 'resume_call_id', null,
    'output', jsonb_build_object('bucket', 'generations',
      'key', 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a020.wav'),
    'generation_id', 'a11ce000-0000-4000-8000-00000000a020', 'text', 'Generation 20', 'language', 'English',
    'voice', jsonb_build_object('id', 'a11ce000-0000-4000-8000-00000000a001',
      'reference_object_key', 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/normalized.wav',
      'reference_transcript', 'This is what the reference recording says.', 'language', 'English',
      -- No hash: this voice's clone job recorded none (the listener's records one).
      'reference_sha256', null)),
  'the claim carries everything the engine needs, and where to store the output');
select is((select status || '/' || attempts || '/' || claimed_by from public.tasks where id = current_setting('test.task')::uuid),
  'processing/1/worker-1', 'the claimed task is processing, attempt 1, by its claimer');
select is((select status from public.generations where id = 'a11ce000-0000-4000-8000-00000000a020'),
  'processing', 'the generation follows its task to processing');

-- worker-1 "crashed": the message came back and worker-2 claims it again.
set local role utter_worker;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-2', 3)::text, true);
select set_config('test.hb1', worker.heartbeat(current_setting('test.task')::uuid, 'worker-1', 0.9, 60), true);
select set_config('test.hb2', worker.heartbeat(current_setting('test.task')::uuid, 'worker-2', 0.5, 120), true);
select set_config('test.call2', worker.record_engine_call(current_setting('test.task')::uuid, 'worker-2', 'fc-123')::text, true);
select set_config('test.call1', worker.record_engine_call(current_setting('test.task')::uuid, 'worker-1', 'fc-stale')::text, true);
reset role;
select is((select attempts || '/' || claimed_by from public.tasks where id = current_setting('test.task')::uuid),
  '2/worker-2', 'a re-claim after a crash counts a second attempt and moves the claim');
select is(current_setting('test.hb1'), 'claimed_elsewhere', 'a heartbeat from the lapsed claimer is told to stop');
select is(current_setting('test.hb2'), 'processing', 'the current claimer''s heartbeat keeps it running');
select is((select progress from public.tasks where id = current_setting('test.task')::uuid), 0.5::real,
  'the heartbeat records progress');
select ok((select vt >= now() + interval '110 seconds' from pgmq.q_generate where msg_id = current_setting('test.msg')::bigint),
  'the heartbeat keeps the message invisible for the requested 120 s');
select is(current_setting('test.call2'), 'true', 'the claimer records its engine call');
select is(current_setting('test.call1'), 'false', 'a lapsed claimer cannot record an engine call');
select is((select engine_call_id from public.tasks where id = current_setting('test.task')::uuid), 'fc-123',
  'the recorded engine call is the claimer''s');

set local role utter_worker;
select set_config('test.out', worker.release_task(current_setting('test.task')::uuid, 'worker-1'), true);
select set_config('test.out2', worker.release_task(current_setting('test.task')::uuid, 'worker-2'), true);
reset role;
select is(current_setting('test.out'), 'processing', 'only the claimer can release a task');
select is(current_setting('test.out2'), 'released', 'the claimer releases it on shutdown');
select is((select status || '/' || attempts || '/' || coalesce(claimed_by, 'nobody') from public.tasks
           where id = current_setting('test.task')::uuid),
  'pending/1/nobody', 'a released task is pending again and the interrupted attempt does not count');
select ok((select vt <= clock_timestamp() from pgmq.q_generate where msg_id = current_setting('test.msg')::bigint),
  'a released task''s message is visible again at once');

set local role utter_worker;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-3', 3)::text, true);
reset role;
select is(current_setting('test.claim')::jsonb #>> '{job,resume_call_id}', 'fc-123',
  'the next claim is told which engine call to re-attach to');

select set_config('test.broadcasts', tests.broadcasts('machine-alice@utter.test')::text, true);
set local role utter_worker;
select set_config('test.out', worker.complete_task(current_setting('test.task')::uuid, 'worker-3',
  '{"duration_seconds": 4.25, "generation_seconds": 2.5}'), true);
reset role;
select is(current_setting('test.out'), 'completed', 'utter_worker completes the task');
select is(
  (select jsonb_build_object('status', g.status, 'audio', g.audio_object_key, 'duration', g.duration_seconds,
                             'took', g.generation_seconds, 'done', g.completed_at is not null)
   from public.generations g where g.id = 'a11ce000-0000-4000-8000-00000000a020'),
  jsonb_build_object('status', 'completed',
    'audio', 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a020.wav',
    'duration', 4.25, 'took', 2.5, 'done', true),
  'the generation holds its audio, duration and generation time');
select is((select status || '/' || progress || '/' || (ended_at is not null) || '/' || coalesce(claimed_by, 'nobody')
           from public.tasks where id = current_setting('test.task')::uuid),
  'completed/1/true/nobody', 'the task is completed, at full progress, ended and unclaimed');
select is((select count(*)::int from pgmq.q_generate where msg_id = current_setting('test.msg')::bigint), 0,
  'the completed task''s message left the queue');
select is((select count(*)::int from pgmq.a_generate where msg_id = current_setting('test.msg')::bigint), 1,
  'the completed task''s message was archived');

-- Repeating the completion changes nothing.
select set_config('test.task_ctid', (select ctid::text from public.tasks where id = current_setting('test.task')::uuid), true);
select set_config('test.generation_ctid', (select ctid::text from public.generations where id = 'a11ce000-0000-4000-8000-00000000a020'), true);
select set_config('test.broadcasts', tests.broadcasts('machine-alice@utter.test')::text, true);
select set_config('test.archived', tests.archived('generate')::text, true);
set local role utter_worker;
select set_config('test.out', worker.complete_task(current_setting('test.task')::uuid, 'worker-3',
  '{"duration_seconds": 9.0}'), true);
select set_config('test.out2', worker.fail_task(current_setting('test.task')::uuid, 'worker-3', 'late failure', false, 0, 3), true);
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-4', 3)::text, true);
reset role;
select is(current_setting('test.out'), 'already_completed', 'a second complete_task says already_completed');
select is((select ctid::text from public.tasks where id = current_setting('test.task')::uuid), current_setting('test.task_ctid'),
  'a second complete_task does not write the task');
select is((select ctid::text from public.generations where id = 'a11ce000-0000-4000-8000-00000000a020'),
  current_setting('test.generation_ctid'), 'a second complete_task does not write the generation');
select is(tests.broadcasts('machine-alice@utter.test'), current_setting('test.broadcasts')::int,
  'a second complete_task broadcasts nothing');
select is(tests.archived('generate'), current_setting('test.archived')::int, 'a second complete_task archives nothing');
select is(current_setting('test.out2'), 'completed', 'a failure reported after completion is ignored');
select is(current_setting('test.claim')::jsonb, '{"outcome": "ended", "status": "completed"}'::jsonb,
  'a redelivered message of a completed task is reported as ended');

-- Retries: a retryable failure goes back to the queue until the attempts run out ------
select set_config('test.task', t.id::text, true), set_config('test.msg', t.msg_id::text, true)
from public.tasks t where t.generation_id = 'a11ce000-0000-4000-8000-00000000a030';
select set_config('test.credits', tests.credits('machine-alice@utter.test')::text, true);
set local role utter_worker;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-1', 2)::text, true);
select set_config('test.out', worker.fail_task(current_setting('test.task')::uuid, 'worker-2', 'not mine', true, 30, 2), true);
select set_config('test.out2', worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'GPU busy', true, 30, 2), true);
reset role;
select is(current_setting('test.out'), 'claimed_elsewhere', 'only the claimer can fail a task');
select is(current_setting('test.out2'), 'retrying', 'a retryable failure with attempts left is retried');
select is((select status || '/' || error || '/' || coalesce(claimed_by, 'nobody') || '/' || progress
           from public.tasks where id = current_setting('test.task')::uuid),
  'pending/GPU busy/nobody/0', 'a retried task is pending again, unclaimed, with the reason');
select is((select status from public.generations where id = 'a11ce000-0000-4000-8000-00000000a030'), 'pending',
  'the generation follows its task back to pending');
select ok((select vt >= now() + interval '25 seconds' from pgmq.q_generate where msg_id = current_setting('test.msg')::bigint),
  'the retry waits the requested 30 s before the message is visible');
select is(tests.credits('machine-alice@utter.test'), current_setting('test.credits')::int, 'a retry refunds nothing');

set local role utter_worker;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-1', 2)::text, true);
select set_config('test.out', worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'GPU busy', true, 30, 2), true);
reset role;
select is(current_setting('test.out'), 'failed', 'a retryable failure on the last attempt fails the task');
select is((select status || '/' || error from public.tasks where id = current_setting('test.task')::uuid),
  'failed/GPU busy (gave up after 2 attempts)', 'the failure says it gave up after the attempts');
select is(tests.credits('machine-alice@utter.test'), current_setting('test.credits')::int + 1,
  'the failed task''s credit is refunded');
select is((select count(*)::int from pgmq.a_generate where msg_id = current_setting('test.msg')::bigint), 1,
  'the failed task''s message is archived');
select is((select status || '/' || error from public.generations where id = 'a11ce000-0000-4000-8000-00000000a030'),
  'failed/GPU busy (gave up after 2 attempts)', 'the generation shows the failure');

-- A permanent failure ends the task on its first attempt.
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a050'), 'worker-1');
set local role utter_worker;
select set_config('test.out', worker.fail_task(gen_random_uuid(), 'worker-1', 'x', false, 0, 3), true);
reset role;
select is(current_setting('test.out'), 'missing', 'failing an unknown task says missing');
select is(worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a050'), 'worker-1', 'text is unspeakable', false, 0, 3),
  'failed', 'a non-retryable failure fails the task at once');

-- Crashes: a task whose claimer keeps dying is given up at the attempt limit.
select set_config('test.task', t.id::text, true), set_config('test.msg', t.msg_id::text, true)
from public.tasks t where t.generation_id = 'a11ce000-0000-4000-8000-00000000a040';
set local role utter_worker;
select worker.claim_task('generate', current_setting('test.msg')::bigint, current_setting('test.task')::uuid, 'w-' || n, 3) ->> 'outcome'
from generate_series(1, 3) n;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'w-4', 3)::text, true);
reset role;
select is(current_setting('test.claim')::jsonb, '{"outcome": "gave_up"}'::jsonb,
  'the claim after the last allowed attempt gives up');
select is((select status || '/' || error from public.tasks where id = current_setting('test.task')::uuid),
  'failed/gave up after 3 attempts: the listener stopped while running it each time',
  'a given-up task is failed with the reason');
select is((select count(*)::int from private.credit_ledger l join public.tasks t on t.id = l.task_id
           where l.reason = 'refund' and t.id = current_setting('test.task')::uuid), 1,
  'the given-up task is refunded');
select is((select count(*)::int from pgmq.a_generate where msg_id = current_setting('test.msg')::bigint), 1,
  'the given-up task''s message is archived');

-- Messages that name no task, or the wrong queue.
select set_config('test.msg', pgmq.send('generate', jsonb_build_object('task_id', gen_random_uuid(), 'type', 'generate'))::text, true);
set local role utter_worker;
select set_config('test.claim', worker.claim_task('generate', current_setting('test.msg')::bigint,
  gen_random_uuid(), 'worker-1', 3)::text, true);
reset role;
select is(current_setting('test.claim')::jsonb, '{"outcome": "missing"}'::jsonb, 'a message for no task is reported missing');
select is((select count(*)::int from pgmq.a_generate where msg_id = current_setting('test.msg')::bigint), 1,
  'a message for no task is archived');
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a010')::text, true);
select set_config('test.msg', pgmq.send('clone',
  jsonb_build_object('task_id', current_setting('test.task'), 'type', 'clone'))::text, true);
set local role utter_worker;
select set_config('test.claim', worker.claim_task('clone', current_setting('test.msg')::bigint,
  current_setting('test.task')::uuid, 'worker-1', 3)::text, true);
reset role;
select is(current_setting('test.claim')::jsonb, '{"outcome": "wrong_queue", "task_type": "generate"}'::jsonb,
  'a message in another type''s queue does not claim the task');
select is((select count(*)::int from pgmq.a_clone where msg_id = current_setting('test.msg')::bigint), 1,
  'a message in the wrong queue is archived');
select throws_ok(format($$ select worker.complete_task(%L, 'worker-1', '{}') $$, t.id),
  '22023', 'complete_task needs a positive duration_seconds, got {}',
  'a completion without a duration is refused')
from (select tests.task_for('a11ce000-0000-4000-8000-00000000a010') id) t
where tests.claim(t.id, 'worker-1') ->> 'outcome' = 'claimed';
select throws_ok($$ select * from worker.read_messages('jobs', 30, 1) $$,
  '22023', 'unknown queue ''jobs''', 'read_messages reads only Utter''s queues');

-- Reading, archiving and storage bookkeeping through worker.*
set local role utter_worker;
select set_config('test.read', (select string_agg(message ->> 'task_id', ',') from worker.read_messages('generate', 30, 10)), true);
select set_config('test.metrics', (select string_agg(queue, ',' order by queue) from worker.queue_metrics()), true);
select worker.record_object('generations', 'a11ce000-0000-4000-8000-000000000001/x.wav', 1024, 'audio/wav',
  'a11ce000-0000-4000-8000-000000000001');
reset role;
select is(current_setting('test.read'), tests.task_for('a11ce000-0000-4000-8000-00000000a010')::text,
  'read_messages returns the one message still waiting (every other one was archived or deleted)');
select is((select read_ct || '/' || (vt > now()) from pgmq.q_generate q
           where q.message ->> 'task_id' = current_setting('test.read')),
  '1/true', 'reading hides the message for the visibility timeout');
select is(current_setting('test.metrics'), 'clone,design_preview,generate,storage_cleanup,transcribe',
  'queue_metrics reports exactly Utter''s five queues');
select is((select owner::text || '/' || (metadata ->> 'size') from storage.objects
           where bucket_id = 'generations' and name = 'a11ce000-0000-4000-8000-000000000001/x.wav'),
  'a11ce000-0000-4000-8000-000000000001/1024', 'record_object records a stored object for its owner');
select is(tests.outcome_as('utter_worker',
    $$ select worker.forget_object('generations', 'a11ce000-0000-4000-8000-000000000001/x.wav') $$),
  '55000: storage object generations/a11ce000-0000-4000-8000-000000000001/x.wav is still stored',
  'forget_object refuses while the object is still stored (removal goes through the Storage API)');
select tests.remove_object_as_storage_api('generations', 'a11ce000-0000-4000-8000-000000000001/x.wav');
select is(tests.outcome_as('utter_worker',
    $$ select worker.forget_object('generations', 'a11ce000-0000-4000-8000-000000000001/x.wav') $$),
  'ok', 'forget_object confirms an object the Storage API removed');
select is_empty($$ select 1 from storage.objects where name = 'a11ce000-0000-4000-8000-000000000001/x.wav' $$,
  'the removed object is gone');

select ok(tests.credits_match_ledger(), 'every balance equals its ledger after the walk-through');

select * from finish();
rollback;
