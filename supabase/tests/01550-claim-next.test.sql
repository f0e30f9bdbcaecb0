-- worker.claim_next: the listener's pickup, reading and claiming in one round trip.
begin;
select plan(8);

select tests.create_user('picker@example.com', 'b0b00000-0000-4000-8000-000000000001');
select tests.authenticate_as('picker@example.com');
insert into design_previews (id, instruct, text, language)
values ('b0b00000-0000-4000-8000-0000000000a1', 'A calm voice', 'First.', 'English'),
       ('b0b00000-0000-4000-8000-0000000000a2', 'A calm voice', 'Second.', 'English');
select tests.clear_authentication();
select pgmq.send('design_preview', '{"no": "task id"}');
select pgmq.send('design_preview', '{"task_id": "not-a-uuid"}');

set local role utter_worker;
create temporary table picked on commit drop as
  select * from worker.claim_next('design_preview', 30, 10, 'picker-worker', 3);
reset role;

select is((select count(*)::int from picked), 4, 'every visible message is read once');
select is((select count(*)::int from picked where claim ->> 'outcome' = 'claimed'), 2,
  'both tasks are claimed in the same call');
select is((select array_agg(claim #>> '{job,text}' order by msg_id) from picked where claim ->> 'outcome' = 'claimed'),
  array['First.', 'Second.'], 'each claim carries its job');
select is((select count(*)::int from picked where claim ->> 'outcome' = 'malformed'), 2,
  'messages without a task id are reported malformed');
select is((select count(*)::int from pgmq.a_design_preview), 2, 'malformed messages are dead-lettered');
select is((select count(*)::int from tasks where status = 'processing' and claimed_by = 'picker-worker' and attempts = 1), 2,
  'claimed tasks are processing, by this worker, on their first attempt');
select is((select count(*)::int from worker.claim_next('design_preview', 30, 10, 'other-worker', 3)), 0,
  'claimed messages are invisible to a second listener');

select tests.authenticate_as('picker@example.com');
select throws_ok($$ select * from worker.claim_next('design_preview', 30, 10, 'x', 3) $$, '42501', null,
  'a user cannot claim work');
select tests.clear_authentication();

select * from finish();
rollback;
