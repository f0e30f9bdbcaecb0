-- worker.settle_task: a finished job's engine time and result in one call, in that
-- order, committed together; refused inputs leave nothing half-written.
begin;
select plan(17);

select tests.create_user('settle-alice@utter.test', 'a11ce000-0000-4000-8000-000000003201');
select tests.make_ready_voice('settle-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000c201');
select tests.allow_concurrent_jobs(10);

select tests.authenticate_as('settle-alice@utter.test');
insert into public.generations (id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000c211', 'a11ce000-0000-4000-8000-00000000c201', 'Settled.', 'English'),
  ('a11ce000-0000-4000-8000-00000000c212', 'a11ce000-0000-4000-8000-00000000c201', 'Refused.', 'English'),
  ('a11ce000-0000-4000-8000-00000000c213', 'a11ce000-0000-4000-8000-00000000c201', 'Cancelled.', 'English');
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000c211'));
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000c212'));
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000c213'));

-- Who may call it ------------------------------------------------------------------
select is(tests.outcome_as('utter_worker', format(
            $$ select worker.settle_task(%L, 'test-worker', 'tone', 1.5, '{"duration_seconds": 2.5, "generation_seconds": 1.5}') $$,
            tests.task_for('a11ce000-0000-4000-8000-00000000c211'))),
          'ok', 'the listener''s role settles a task it claimed');
select is(tests.outcome_as(r, $$ select worker.settle_task(gen_random_uuid(), 'w', 'tone', 1, '{"duration_seconds": 1}') $$),
          '42501: permission denied for schema worker', r || ' cannot settle a task')
from unnest(array['anon', 'authenticated', 'service_role']) r;

-- What one call leaves -------------------------------------------------------------
select is((select status from public.tasks where id = tests.task_for('a11ce000-0000-4000-8000-00000000c211')),
          'completed', 'the task is completed');
select results_eq(
  $$ select status, duration_seconds, generation_seconds from public.generations
     where id = 'a11ce000-0000-4000-8000-00000000c211' $$,
  $$ values ('completed'::text, 2.5::real, 1.5::real) $$,
  'its generation holds the result');
select results_eq(
  format($$ select engine, gpu_seconds from private.task_usage where task_id = %L $$,
         tests.task_for('a11ce000-0000-4000-8000-00000000c211')),
  $$ values ('tone'::text, 1.5::numeric) $$,
  'the engine and its seconds are recorded with it');
select is(tests.archived('generate'), 1, 'its message is archived');

-- Again: the answer of a repeat, and the figure replaced, not added ----------------
select is(worker.settle_task(tests.task_for('a11ce000-0000-4000-8000-00000000c211'), 'test-worker', 'tone', 2,
                             '{"duration_seconds": 2.5}'),
          'already_completed', 'settling again answers already_completed');
select results_eq(
  $$ select gpu_seconds, tasks from private.daily_usage where user_id = 'a11ce000-0000-4000-8000-000000003201' $$,
  $$ values (2::numeric, 1) $$,
  'a repeat replaces the task''s engine seconds and counts the task once');

-- Refused inputs: nothing half-written -----------------------------------------------
select throws_ok(
  format($$ select worker.settle_task(%L, 'test-worker', 'tone', 1, '{"duration_seconds": 0}') $$,
         tests.task_for('a11ce000-0000-4000-8000-00000000c212')),
  '22023', null, 'a result complete_task refuses is refused');
select is((select count(*)::integer from private.task_usage
           where task_id = tests.task_for('a11ce000-0000-4000-8000-00000000c212')),
          0, 'and no engine time was recorded for it');
select throws_ok(
  format($$ select worker.settle_task(%L, 'test-worker', '', 1, '{"duration_seconds": 1}') $$,
         tests.task_for('a11ce000-0000-4000-8000-00000000c212')),
  '22023', 'record_usage needs an engine name of 1 to 40 characters, got ''''',
  'an engine name record_usage refuses is refused');
select is((select status from public.tasks where id = tests.task_for('a11ce000-0000-4000-8000-00000000c212')),
          'processing', 'and the task is still running');

-- A task that ended meanwhile: the engine time is still recorded ----------------------
select tests.authenticate_as('settle-alice@utter.test');
update public.tasks set cancel_requested_at = now()
where id = tests.task_for('a11ce000-0000-4000-8000-00000000c213');
select tests.clear_authentication();
select is(worker.settle_task(tests.task_for('a11ce000-0000-4000-8000-00000000c213'), 'test-worker', 'tone', 3,
                             '{"duration_seconds": 2.5}'),
          'cancelled', 'a cancelled task answers cancelled');
select is((select gpu_seconds from private.task_usage
           where task_id = tests.task_for('a11ce000-0000-4000-8000-00000000c213')),
          3::numeric, 'and the engine time it cost is recorded');

select is(worker.settle_task('00000000-0000-4000-8000-0000000000ff', 'test-worker', 'tone', 1,
                             '{"duration_seconds": 1}'),
          'missing', 'an unknown task answers missing');

select * from finish();
rollback;
