-- A task that ends failed or cancelled after an attempt ran leaves no stored output:
-- a listener may have uploaded it just before dying, so its key goes to cleanup.
begin;
select plan(4);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('cleaner@example.com', 'c1ea0000-0000-4000-8000-000000000001');
select tests.authenticate_as('cleaner@example.com');
insert into design_previews (id, instruct, text, language) values
  ('c1ea0000-0000-4000-8000-0000000000a1', 'A calm voice', 'Ran, then cancelled.', 'English'),
  ('c1ea0000-0000-4000-8000-0000000000a2', 'A calm voice', 'Cancelled while queued.', 'English'),
  ('c1ea0000-0000-4000-8000-0000000000a3', 'A calm voice', 'Ran, then failed.', 'English');
select tests.clear_authentication();

select tests.claim(tests.task_for('c1ea0000-0000-4000-8000-0000000000a1'));
select tests.claim(tests.task_for('c1ea0000-0000-4000-8000-0000000000a3'));

select tests.authenticate_as('cleaner@example.com');
update tasks set cancel_requested_at = now()
where design_preview_id in ('c1ea0000-0000-4000-8000-0000000000a1', 'c1ea0000-0000-4000-8000-0000000000a2');
select tests.clear_authentication();
select worker.fail_task(tests.task_for('c1ea0000-0000-4000-8000-0000000000a3'), 'test-worker',
                        'the engine refused the text', false, 0, 3);

select is(
  (select message from pgmq.q_storage_cleanup
    where message -> 'keys' ? 'c1ea0000-0000-4000-8000-000000000001/previews/c1ea0000-0000-4000-8000-0000000000a1.wav'),
  jsonb_build_object('bucket', 'references', 'keys',
    jsonb_build_array('c1ea0000-0000-4000-8000-000000000001/previews/c1ea0000-0000-4000-8000-0000000000a1.wav')),
  'cancelling a task that ran queues removal of its output');
select is(
  (select count(*)::int from pgmq.q_storage_cleanup
    where message -> 'keys' ? 'c1ea0000-0000-4000-8000-000000000001/previews/c1ea0000-0000-4000-8000-0000000000a3.wav'),
  1, 'failing a task that ran queues removal of its output');
select is(
  (select count(*)::int from pgmq.q_storage_cleanup
    where message -> 'keys' ? 'c1ea0000-0000-4000-8000-000000000001/previews/c1ea0000-0000-4000-8000-0000000000a2.wav'),
  0, 'a task cancelled before any attempt has no output to remove');
select is((select count(*)::int from pgmq.q_storage_cleanup), 2, 'nothing else is queued for cleanup');

select * from finish();
rollback;
