-- An output stored after its task ended is queued for removal when its object row
-- lands, so a listener killed before it settles leaves no orphan; outputs of running
-- tasks and the live audio of completed subjects are never queued.
begin;
select plan(4);

select tests.create_user('stored-late@example.com', '5707ed00-0000-4000-8000-000000000001');
select tests.authenticate_as('stored-late@example.com');
insert into design_previews (id, instruct, text, language) values
  ('5707ed00-0000-4000-8000-0000000000a1', 'A calm voice', 'Cancelled, then stored.', 'English'),
  ('5707ed00-0000-4000-8000-0000000000a2', 'A calm voice', 'Stored while running.', 'English');
select tests.clear_authentication();

create function pg_temp.cleanups(object_key text) returns integer language sql as $$
  select count(*)::integer from pgmq.q_storage_cleanup where message -> 'keys' ? object_key
$$;
create function pg_temp.store(object_key text) returns void language sql as $$
  insert into storage.objects (bucket_id, name, owner_id) values ('references', object_key, null)
$$;

select tests.claim(tests.task_for('5707ed00-0000-4000-8000-0000000000a1'), 'listener-a');
select tests.claim(tests.task_for('5707ed00-0000-4000-8000-0000000000a2'), 'listener-a');
select tests.authenticate_as('stored-late@example.com');
update tasks set cancel_requested_at = now()
where id = tests.task_for('5707ed00-0000-4000-8000-0000000000a1');
select tests.clear_authentication();
delete from pgmq.q_storage_cleanup;  -- the cancel's own cleanup ran before the upload landed

select pg_temp.store('5707ed00-0000-4000-8000-000000000001/previews/5707ed00-0000-4000-8000-0000000000a1.wav');
select is(pg_temp.cleanups('5707ed00-0000-4000-8000-000000000001/previews/5707ed00-0000-4000-8000-0000000000a1.wav'), 1,
  'an output stored after its task was cancelled is queued for removal as it lands');

select pg_temp.store('5707ed00-0000-4000-8000-000000000001/previews/5707ed00-0000-4000-8000-0000000000a2.wav');
select is(pg_temp.cleanups('5707ed00-0000-4000-8000-000000000001/previews/5707ed00-0000-4000-8000-0000000000a2.wav'), 0,
  'the output of a running task is not');
select is(tests.complete(tests.task_for('5707ed00-0000-4000-8000-0000000000a2'), 'listener-a'), 'completed',
  'and it is adopted when the task completes');
update storage.objects set metadata = '{"size": 1}'
where name = '5707ed00-0000-4000-8000-000000000001/previews/5707ed00-0000-4000-8000-0000000000a2.wav';
select is(pg_temp.cleanups('5707ed00-0000-4000-8000-000000000001/previews/5707ed00-0000-4000-8000-0000000000a2.wav'), 0,
  'storing a completed subject''s live audio again queues nothing');

select * from finish();
rollback;
