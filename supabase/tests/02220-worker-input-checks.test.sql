-- Every worker function that takes a queue checks the worker's queue list, and every
-- number a worker passes must be finite.
begin;
select plan(10);

select tests.create_user('numbers@example.com', '2a3b0000-0000-4000-8000-000000000001');
select tests.authenticate_as('numbers@example.com');
insert into design_previews (id, instruct, text, language) values
  ('2a3b0000-0000-4000-8000-0000000000a1', 'A calm voice', 'Finite numbers only.', 'English');
select tests.clear_authentication();
select pgmq.create('not_a_worker_queue');
select pgmq.send('not_a_worker_queue', jsonb_build_object('task_id', tests.task_for('2a3b0000-0000-4000-8000-0000000000a1')));

select is(tests.outcome_as('utter_worker', format(
  $$ select worker.claim_task('not_a_worker_queue', 1, %L, 'w', 3) $$,
  tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'))),
  '22023: unknown queue ''not_a_worker_queue''', 'claim_task refuses a queue outside the worker''s list');
select is(tests.archived('not_a_worker_queue'), 0, 'and touches nothing in it');
select is(tests.outcome_as('utter_worker',
  $$ select * from worker.claim_next('not_a_worker_queue', 30, 1, 'w', 3) $$),
  '22023: unknown queue ''not_a_worker_queue''', 'claim_next refuses a queue outside the worker''s list');
select is(tests.outcome_as('utter_worker',
  $$ select * from worker.claim_next('storage_cleanup', 30, 1, 'w', 3) $$),
  '22023: queue ''storage_cleanup'' carries no tasks; read it with read_messages',
  'claim_next refuses the cleanup queue, which carries no tasks');

select tests.claim(tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'), 'w');
select is(tests.outcome_as('utter_worker', format(
  $$ select worker.complete_task(%L, 'w', '{"duration_seconds": "NaN"}') $$,
  tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'))),
  '22023: duration_seconds must be a JSON number, got "NaN"', 'complete_task refuses a NaN duration');
select is(tests.outcome_as('utter_worker', format(
  $$ select worker.complete_task(%L, 'w', '{"duration_seconds": 1e400}') $$,
  tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'))),
  '22023: duration_seconds must be a finite number; it is out of range', 'complete_task refuses a duration too large to be finite');
select is(tests.outcome_as('utter_worker', format(
  $$ select worker.complete_task(%L, 'w', '{"duration_seconds": 2, "generation_seconds": "Infinity"}') $$,
  tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'))),
  '22023: generation_seconds must be a JSON number, got "Infinity"', 'complete_task refuses an infinite run time');
select is(tests.outcome_as('utter_worker', format(
  $$ select worker.heartbeat(%L, 'w', 'NaN'::real, 30) $$,
  tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'))),
  '22023: progress must be a finite number, got NaN', 'heartbeat refuses a NaN progress');
select is((select status from tasks where id = tests.task_for('2a3b0000-0000-4000-8000-0000000000a1')), 'processing',
  'refused numbers change nothing');
select is(tests.outcome_as('utter_worker', format(
  $$ select worker.complete_task(%L, 'w', '[]') $$,
  tests.task_for('2a3b0000-0000-4000-8000-0000000000a1'))),
  '22023: complete_task needs a result object, got []', 'complete_task refuses a result that is not an object');

select * from finish();
rollback;
