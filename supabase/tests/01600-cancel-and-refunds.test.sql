-- Cancelling: the user writes tasks.cancel_requested_at; a pending task ends at once
-- and leaves the queue, a running one ends and its listener is told to stop. Failed and
-- cancelled work is refunded exactly once, whatever order failure, cancel, retry and
-- completion arrive in.
--   alice a11ce000-...-000000000001, ready voice ...a001; generations ...a0NN below.
begin;
select plan(42);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('cancel-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('cancel-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('cancel-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('cancel-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
insert into public.generations (id, user_id, voice_id, text, language)
select ('a11ce000-0000-4000-8000-00000000a0' || n)::uuid, 'a11ce000-0000-4000-8000-000000000001',
       'a11ce000-0000-4000-8000-00000000a001', repeat('x', 600), 'English'  -- 2 credits each
from unnest(array['10', '20', '30', '40', '50', '60', '70', '80', '90']) n;
insert into public.generations (id, user_id, voice_id, text, language) values
  ('b0b00000-0000-4000-8000-00000000b010', 'b0b00000-0000-4000-8000-000000000002',
   'b0b00000-0000-4000-8000-00000000b001', 'Bob''s words.', 'English');
select is(tests.credits('cancel-alice@utter.test'), 82, 'nine 2-credit generations were charged');

-- A pending task ---------------------------------------------------------------------
select set_config('test.msg', (select msg_id::text from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a010'), true);
select tests.authenticate_as('cancel-alice@utter.test');
with cancelled as (
  update public.tasks set cancel_requested_at = now()
  where generation_id = 'a11ce000-0000-4000-8000-00000000a010'
  returning status, error, cancel_requested_at is not null and ended_at is not null as stamped
)
select is(status || '/' || error || '/' || stamped, 'cancelled/cancelled by the user/true',
  'cancelling a pending task ends it at once, in the same statement') from cancelled;
select is((select status from public.generations where id = 'a11ce000-0000-4000-8000-00000000a010'), 'cancelled',
  'the generation shows cancelled');
select is((select credits from public.profiles), 84, 'the 2 credits came back');
select tests.clear_authentication();
select is((select count(*)::int from pgmq.q_generate where msg_id = current_setting('test.msg')::bigint), 0,
  'the pending task''s message was removed from the queue');
select is((select count(*)::int from pgmq.a_generate where msg_id = current_setting('test.msg')::bigint), 0,
  'a cancelled message is deleted, not archived as if it had run');

-- A running task ---------------------------------------------------------------------
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a020')::text, true);
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select tests.authenticate_as('cancel-alice@utter.test');
with cancelled as (
  update public.tasks set cancel_requested_at = now() where id = current_setting('test.task')::uuid returning status
)
select is(string_agg(status, ','), 'cancelled', 'cancelling a running task (by task id) ends it at once') from cancelled;
select is((select credits from public.profiles), 86, 'the running task''s 2 credits came back');
select tests.clear_authentication();
select is(worker.heartbeat(current_setting('test.task')::uuid, 'worker-1', 0.7, 60), 'cancelled',
  'the listener''s next heartbeat is told the task was cancelled');
select is(tests.complete(current_setting('test.task')::uuid, 'worker-1'), 'cancelled',
  'a completion arriving after the cancel is refused with ''cancelled''');
select is((select status || '/' || coalesce(audio_object_key, 'no audio') from public.generations
           where id = 'a11ce000-0000-4000-8000-00000000a020'),
  'cancelled/no audio', 'the late completion did not resurrect the generation');
select is((select count(*)::int from private.credit_ledger
           where task_id = current_setting('test.task')::uuid and reason = 'refund'), 1,
  'the cancelled-then-completed task was refunded once');
select is(tests.claim(current_setting('test.task')::uuid, 'worker-2'), '{"outcome": "ended", "status": "cancelled"}'::jsonb,
  'when its message comes back, the cancelled task is not run again');
select is((select count(*)::int from pgmq.a_generate where msg_id = (select msg_id from public.tasks
           where id = current_setting('test.task')::uuid)), 1, 'and its message is archived');

-- Cancels that change nothing ---------------------------------------------------------
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a030'));
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a030'));
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a040'));
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a040'), 'test-worker', 'bad audio', false, 0, 3);
select set_config('test.credits', tests.credits('cancel-alice@utter.test')::text, true);
select tests.authenticate_as('cancel-alice@utter.test');
select lives_ok($$ update public.tasks set cancel_requested_at = now() where generation_id = 'a11ce000-0000-4000-8000-00000000a030' $$,
  'cancelling a completed task is not an error');
select is((select status || '/' || coalesce(cancel_requested_at::text, 'never') from public.tasks
           where generation_id = 'a11ce000-0000-4000-8000-00000000a030'),
  'completed/never', 'a completed task stays completed and unmarked');
with again as (
  update public.tasks set cancel_requested_at = now() where generation_id = 'a11ce000-0000-4000-8000-00000000a010' returning 1
)
select is(count(*)::int, 0, 'cancelling an already cancelled task is a silent no-op') from again;
with late as (
  update public.tasks set cancel_requested_at = now() where generation_id = 'a11ce000-0000-4000-8000-00000000a040' returning 1
)
select is(count(*)::int, 0, 'cancelling a failed task is a silent no-op') from late;
with other as (
  update public.tasks set cancel_requested_at = now() where generation_id = 'b0b00000-0000-4000-8000-00000000b010' returning 1
)
select is(count(*)::int, 0, 'cancelling another user''s task affects no row') from other;
select tests.clear_authentication();
select is(tests.credits('cancel-alice@utter.test'), current_setting('test.credits')::int,
  'no-op cancels refund nothing');
select is((select status from public.tasks where generation_id = 'b0b00000-0000-4000-8000-00000000b010'), 'pending',
  'bob''s task is still pending');
select is((select count(*)::int from private.credit_ledger l join public.tasks t on t.id = l.task_id
           where t.generation_id = 'a11ce000-0000-4000-8000-00000000a040' and l.reason = 'refund'), 1,
  'the failed task was refunded once, by its failure');

-- Other task types ---------------------------------------------------------------------
select tests.authenticate_as('cancel-alice@utter.test');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a0d1', 'A calm narrator', 'Hello there.', 'Japanese');
select tests.upload_reference('cancel-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000a002', 'Second', 'English',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav', 'Ten or more characters.');
select set_config('test.credits', (select credits::text from public.profiles), true);
update public.tasks set cancel_requested_at = now()
where design_preview_id = 'a11ce000-0000-4000-8000-00000000a0d1' or voice_id = 'a11ce000-0000-4000-8000-00000000a002';
select is((select status from public.design_previews where id = 'a11ce000-0000-4000-8000-00000000a0d1'), 'cancelled',
  'a cancelled design preview shows cancelled');
select is((select status from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'), 'cancelled',
  'a cancelled clone leaves its voice cancelled');
select is((select credits from public.profiles), current_setting('test.credits')::int + 1,
  'the preview''s credit came back and the free clone refunded nothing');
select tests.clear_authentication();
select is(tests.queued('design_preview') + tests.queued('clone'), 0, 'both cancelled messages left their queues');

-- Refunded once, whatever the order ----------------------------------------------------
-- Retryable failure, then cancel while it waits, then the old attempt reports failure.
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a050')::text, true);
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select is(worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'GPU busy', true, 30, 3), 'retrying',
  'a retryable failure sends the task back to the queue');
select tests.authenticate_as('cancel-alice@utter.test');
update public.tasks set cancel_requested_at = now() where id = current_setting('test.task')::uuid;
select tests.clear_authentication();
select is(worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'GPU busy', false, 0, 3), 'cancelled',
  'a failure reported after the cancel is refused with ''cancelled''');
select is((select count(*)::int from private.credit_ledger
           where task_id = current_setting('test.task')::uuid and reason = 'refund'), 1,
  'fail (retry), cancel, fail: refunded once');

-- Deleting the generation while it runs, then the listener reports failure.
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a060')::text, true);
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select tests.authenticate_as('cancel-alice@utter.test');
delete from public.generations where id = 'a11ce000-0000-4000-8000-00000000a060';
select tests.clear_authentication();
select is((select status || '/' || error || '/' || coalesce(generation_id::text, 'detached') from public.tasks
           where id = current_setting('test.task')::uuid),
  'cancelled/generation deleted/detached', 'deleting a running generation cancels and detaches its task');
select is(worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'engine error', false, 0, 3), 'cancelled',
  'the listener''s failure afterwards is refused with ''cancelled''');
select is(tests.complete(current_setting('test.task')::uuid, 'worker-1'), 'cancelled',
  'so is a completion');
select is((select count(*)::int from private.credit_ledger
           where task_id = current_setting('test.task')::uuid and reason = 'refund'), 1,
  'delete while running, then fail: refunded once');

-- Final failure, then a cancel, then a redelivered message.
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a070')::text, true);
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'engine error', false, 0, 3);
select tests.authenticate_as('cancel-alice@utter.test');
update public.tasks set cancel_requested_at = now() where id = current_setting('test.task')::uuid;
select tests.clear_authentication();
select is(tests.claim(current_setting('test.task')::uuid, 'worker-2'), '{"outcome": "ended", "status": "failed"}'::jsonb,
  'a failed task is not run again');
select is((select count(*)::int from private.credit_ledger
           where task_id = current_setting('test.task')::uuid and reason = 'refund'), 1,
  'fail, cancel, redelivery: refunded once');

-- Cancel racing a retry: cancelled while pending for its retry, then claimed again.
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a080')::text, true);
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select worker.fail_task(current_setting('test.task')::uuid, 'worker-1', 'GPU busy', true, 0, 3);
select tests.authenticate_as('cancel-alice@utter.test');
update public.tasks set cancel_requested_at = now() where id = current_setting('test.task')::uuid;
select tests.clear_authentication();
select is((select count(*)::int from pgmq.q_generate q join public.tasks t on t.msg_id = q.msg_id
           where t.id = current_setting('test.task')::uuid), 0,
  'a task cancelled while waiting for its retry leaves the queue');
select is(tests.claim(current_setting('test.task')::uuid, 'worker-2') ->> 'outcome', 'ended',
  'and a stale delivery of it does not run');
select is((select count(*)::int from private.credit_ledger
           where task_id = current_setting('test.task')::uuid and reason = 'refund'), 1,
  'retry, cancel, claim: refunded once');

-- Completed, then cancel: the work was delivered, so it is charged.
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a090')::text, true);
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select tests.complete(current_setting('test.task')::uuid, 'worker-1');
select tests.authenticate_as('cancel-alice@utter.test');
update public.tasks set cancel_requested_at = now() where id = current_setting('test.task')::uuid;
select tests.clear_authentication();
select is((select count(*)::int from private.credit_ledger
           where task_id = current_setting('test.task')::uuid and reason = 'refund'), 0,
  'complete, then cancel: no refund');

select is(tests.ledger_rows('cancel-alice@utter.test', 'refund'), 8,
  'alice has one refund per failed or cancelled charged task (a010, a020, a040-a080 and the preview)');
select is(tests.credits('cancel-alice@utter.test'), 100 - 2 * 9 - 1 + 2 * 7 + 1,
  'alice paid only for the work she got: generations a030 and a090');
select ok(tests.credits_match_ledger(), 'every balance equals its ledger');

select * from finish();
rollback;
