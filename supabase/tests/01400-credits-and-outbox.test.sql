-- An insert is charged, becomes a task and enqueues one message, all in the inserting
-- transaction: what rolls back leaves no message, task or charge behind. Balances are
-- the ledger's sum and the ledger only grows.
begin;
select plan(45);
select tests.allow_concurrent_jobs(20);  -- the cap on unfinished tasks of any kind (10) applies first

select tests.create_user('credits-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('credits-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select is(tests.credits('credits-alice@utter.test'), 100, 'a new user starts with 100 free credits');
select is(tests.ledger_rows('credits-alice@utter.test', 'signup_grant'), 1, 'the free credits are one signup grant in the ledger');

-- Prices ---------------------------------------------------------------------------
select tests.make_ready_voice('credits-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
select is((select cost from public.tasks where voice_id = 'a11ce000-0000-4000-8000-00000000a001'), 0,
  'cloning costs nothing');
select is(tests.ledger_rows('credits-alice@utter.test', 'charge'), 0, 'a free clone writes no charge');

select tests.authenticate_as('credits-alice@utter.test');
insert into public.generations (id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a101', 'a11ce000-0000-4000-8000-00000000a001', 'x', 'English'),
  ('a11ce000-0000-4000-8000-00000000a500', 'a11ce000-0000-4000-8000-00000000a001', repeat('x', 500), 'English'),
  ('a11ce000-0000-4000-8000-00000000a501', 'a11ce000-0000-4000-8000-00000000a001', repeat('x', 501), 'English'),
  ('a11ce000-0000-4000-8000-00000000a5f0', 'a11ce000-0000-4000-8000-00000000a001', repeat('x', 5000), 'English');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a0d1', 'A calm narrator', 'Hello there.', 'Italian');

select is((select cost from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a101'), 1,
  'a 1-character generation costs 1 credit');
select is((select cost from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a500'), 1,
  'a 500-character generation costs 1 credit');
select is((select cost from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a501'), 2,
  'a 501-character generation costs 2 credits');
select is((select cost from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a5f0'), 10,
  'a 5000-character generation costs 10 credits');
select is((select cost from public.tasks where design_preview_id = 'a11ce000-0000-4000-8000-00000000a0d1'), 1,
  'a design preview costs 1 credit');
select is((select credits from public.profiles), 85, 'the balance dropped by the 15 credits charged');
select tests.clear_authentication();
select results_eq(
  $$ select t.cost, -l.delta from public.tasks t
     join private.credit_ledger l on l.task_id = t.id and l.reason = 'charge'
     where t.user_id = 'a11ce000-0000-4000-8000-000000000001' order by t.cost $$,
  $$ values (1, 1), (1, 1), (1, 1), (2, 2), (10, 10) $$,
  'each charged task has exactly one charge row for its cost');
select ok(tests.credits_match_ledger(), 'the balance equals the ledger after charging');

-- The outbox -----------------------------------------------------------------------
select is(tests.queued('generate'), 4, 'four generations enqueued four messages');
select is(tests.queued('design_preview'), 1, 'one design preview enqueued one message');
select results_eq(
  $$ select q.message from pgmq.q_generate q order by q.msg_id $$,
  $$ select jsonb_build_object('task_id', t.id, 'type', 'generate') from public.tasks t
     where t.type = 'generate' order by t.msg_id $$,
  'each generate message is exactly {task_id, type} and is the one its task records');
select is(
  (select q.message from pgmq.q_design_preview q),
  (select jsonb_build_object('task_id', t.id, 'type', 'design_preview') from public.tasks t
   where t.design_preview_id = 'a11ce000-0000-4000-8000-00000000a0d1'),
  'the design preview message is exactly {task_id, type}: no instruct or text');

select tests.authenticate_as('credits-alice@utter.test');
savepoint before_insert;
insert into public.generations (voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000a001', 'Rolled back words.', 'English');
select is(tests.queued('generate'), 5, 'inside the inserting transaction the message is there');
rollback to savepoint before_insert;
select tests.clear_authentication();
select is(tests.queued('generate'), 4, 'a rolled-back insert leaves no message');
select is((select count(*)::int from public.tasks where user_id = 'a11ce000-0000-4000-8000-000000000001'), 6,
  'a rolled-back insert leaves no task');
select is(tests.credits('credits-alice@utter.test'), 85, 'a rolled-back insert leaves no charge');

-- A statement that fails after one of its rows was charged and enqueued undoes both.
select tests.set_credits('credits-alice@utter.test', 10);
select tests.authenticate_as('credits-alice@utter.test');
select throws_ok($$ insert into public.generations (voice_id, text, language) values
    ('a11ce000-0000-4000-8000-00000000a001', repeat('a', 5000), 'English'),
    ('a11ce000-0000-4000-8000-00000000a001', repeat('b', 5000), 'English') $$,
  'PT402', 'not enough credits: this generation costs 10 and the balance is 0',
  'the second of two 10-credit generations finds the first one''s charge');
select tests.clear_authentication();
select is(tests.queued('generate'), 4, 'the failed statement left no message');
select is((select count(*)::int from public.tasks where user_id = 'a11ce000-0000-4000-8000-000000000001'), 6,
  'the failed statement left no task');
select is(tests.credits('credits-alice@utter.test'), 10, 'the failed statement left no charge');
select is(tests.ledger_rows('credits-alice@utter.test', 'charge'), 6,
  'the ledger holds only the five charges and the spend set up above');

-- Not enough credits ---------------------------------------------------------------
select tests.set_credits('credits-alice@utter.test', 5);
select tests.authenticate_as('credits-alice@utter.test');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', repeat('x', 5000), 'English') $$,
  'PT402', 'not enough credits: this generation costs 10 and the balance is 5',
  'a generation costing more than the balance is refused with PT402');
select lives_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', repeat('x', 2500), 'English') $$,
  'a generation costing exactly the balance is accepted');
select is((select credits from public.profiles), 0, 'the balance reached zero');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', 'Hi there.', 'English') $$,
  'PT402', 'not enough credits: this design preview costs 1 and the balance is 0',
  'a design preview with no credits left is refused with PT402');
select tests.upload_reference('credits-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a002', 'Free', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav',
            'Ten or more characters.') $$,
  'cloning works with no credits left');
select tests.clear_authentication();
select ok(tests.credits_match_ledger(), 'the balance equals the ledger after refusals');

-- The unfinished-task limit --------------------------------------------------------
select tests.make_ready_voice('credits-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
select tests.authenticate_as('credits-bob@utter.test');
insert into public.generations (voice_id, text, language)
select 'b0b00000-0000-4000-8000-00000000b001', 'Queued number ' || n, 'English' from generate_series(1, 10) n;
select is((select count(*)::int from public.tasks where status = 'pending'), 10, 'ten tasks can wait at once');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('b0b00000-0000-4000-8000-00000000b001', 'One too many.', 'English') $$,
  'PT429', 'too many unfinished tasks: 10 are queued or running (limit 10)',
  'an eleventh unfinished generation is refused with PT429');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', 'Hi there.', 'English') $$,
  'PT429', 'too many unfinished tasks: 10 are queued or running (limit 10)',
  'the limit counts every kind of task (design preview refused)');
select tests.upload_reference('credits-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b002');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('b0b00000-0000-4000-8000-00000000b002', 'Free', 'English',
            'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b002/reference.wav',
            'Ten or more characters.') $$,
  'PT429', 'too many unfinished tasks: 10 are queued or running (limit 10)',
  'even a free clone waits for the limit');
select is((select credits from public.profiles), 90, 'refused inserts charged nothing');
update public.tasks set cancel_requested_at = now()
where id = (select id from public.tasks where status = 'pending' order by created_at, id limit 1);
select lives_ok($$ insert into public.generations (voice_id, text, language)
    values ('b0b00000-0000-4000-8000-00000000b001', 'Room again.', 'English') $$,
  'cancelling one frees a place');
select tests.clear_authentication();
select is(tests.complete((select t.id from public.tasks t
  where t.user_id = 'b0b00000-0000-4000-8000-000000000002' and t.status = 'pending'
  order by t.created_at, t.id limit 1)), 'not_running', 'a task that was never claimed cannot be completed');
select is((select count(*)::int from public.tasks
           where user_id = 'b0b00000-0000-4000-8000-000000000002' and status in ('pending', 'processing')), 10,
  'an unclaimed task cannot be completed, so the limit still holds');
select is(tests.credits('credits-bob@utter.test'), 90, 'the cancelled task''s credit came back');

-- The ledger only grows --------------------------------------------------------------
select throws_ok($$ update private.credit_ledger set delta = 1000 where user_id = 'a11ce000-0000-4000-8000-000000000001' $$,
  'P0001', 'private.credit_ledger is append-only (UPDATE refused)', 'ledger rows cannot be changed');
select throws_ok($$ delete from private.credit_ledger where user_id = 'a11ce000-0000-4000-8000-000000000001' $$,
  'P0001', 'private.credit_ledger is append-only (DELETE refused)', 'ledger rows cannot be deleted');
select throws_ok($$ truncate private.credit_ledger cascade $$,
  'P0001', 'private.credit_ledger is append-only (TRUNCATE refused)', 'the ledger cannot be truncated');
select throws_ok($$ update public.profiles set credits = -1 where id = 'a11ce000-0000-4000-8000-000000000001' $$,
  '23514', 'new row for relation "profiles" violates check constraint "profiles_credits_not_negative"',
  'a balance can never go negative');
select ok(tests.credits_match_ledger(), 'every balance equals its ledger at the end');

select * from finish();
rollback;
