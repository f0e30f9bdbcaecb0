-- No output outlives its task: a result stored after the task ended, or after its
-- subject was deleted, is queued for removal by complete_task itself, in the same
-- transaction as the answer, so the listener crashing right after cannot keep it.
begin;
select plan(12);

-- Two users with two previews each: within any tier's limit of jobs at once.
select tests.create_user('late@example.com', '1a7e0000-0000-4000-8000-000000000001');
select tests.create_user('later@example.com', '1a7e0000-0000-4000-8000-000000000002');
select tests.authenticate_as('late@example.com');
insert into design_previews (id, instruct, text, language) values
  ('1a7e0000-0000-4000-8000-0000000000a1', 'A calm voice', 'Taken over, then deleted.', 'English'),
  ('1a7e0000-0000-4000-8000-0000000000a2', 'A calm voice', 'Cancelled during delivery.', 'English');
select tests.authenticate_as('later@example.com');
insert into design_previews (id, instruct, text, language) values
  ('1a7e0000-0000-4000-8000-0000000000a3', 'A calm voice', 'Taken over, kept.', 'English'),
  ('1a7e0000-0000-4000-8000-0000000000a4', 'A calm voice', 'Saved as a voice, then deleted.', 'English');
select tests.clear_authentication();

create temporary table ids on commit drop as
  select tests.task_for('1a7e0000-0000-4000-8000-0000000000a1') as deleted,
         tests.task_for('1a7e0000-0000-4000-8000-0000000000a2') as cancelled,
         tests.task_for('1a7e0000-0000-4000-8000-0000000000a3') as kept,
         tests.task_for('1a7e0000-0000-4000-8000-0000000000a4') as saved;
grant select on ids to authenticated;
create function pg_temp.cleanups(object_key text) returns integer language sql as $$
  select count(*)::integer from pgmq.q_storage_cleanup where message -> 'keys' ? object_key
$$;

-- Listener A is frozen mid-job; B takes over and completes; the owner deletes the
-- preview and the cleanup runs; A wakes and stores its result.
select tests.claim((select deleted from ids), 'listener-a');
select pgmq.set_vt('design_preview', (select msg_id from tasks where id = (select deleted from ids)), 0);
select tests.claim((select deleted from ids), 'listener-b');
select is(tests.complete((select deleted from ids), 'listener-b'), 'completed', 'B completes the task');
select tests.authenticate_as('late@example.com');
delete from design_previews where id = '1a7e0000-0000-4000-8000-0000000000a1';
select tests.clear_authentication();
select is(pg_temp.cleanups('1a7e0000-0000-4000-8000-000000000001/previews/1a7e0000-0000-4000-8000-0000000000a1.wav'), 1,
  'deleting the preview queues its audio for removal');
delete from pgmq.q_storage_cleanup;  -- the cleanup ran
select is(tests.complete((select deleted from ids), 'listener-a'), 'already_completed',
  'the late result is not adopted');
select is(pg_temp.cleanups('1a7e0000-0000-4000-8000-000000000001/previews/1a7e0000-0000-4000-8000-0000000000a1.wav'), 1,
  'the late result for a deleted subject is queued for removal');

-- A cancel lands while the audio is being stored; its own cleanup has already run.
select tests.claim((select cancelled from ids), 'listener-a');
select tests.authenticate_as('late@example.com');
update tasks set cancel_requested_at = now() where id = (select cancelled from ids);
select tests.clear_authentication();
delete from pgmq.q_storage_cleanup;  -- the cleanup ran before the upload landed
select is(tests.complete((select cancelled from ids), 'listener-a'), 'cancelled',
  'a result stored after the cancel is refused');
select is(pg_temp.cleanups('1a7e0000-0000-4000-8000-000000000001/previews/1a7e0000-0000-4000-8000-0000000000a2.wav'), 1,
  'and queued for removal in the same transaction');

-- A lapsed listener finishing after the new claimer completed a subject that lives:
-- the object is the subject's audio, nothing is removed.
select tests.claim((select kept from ids), 'listener-a');
select pgmq.set_vt('design_preview', (select msg_id from tasks where id = (select kept from ids)), 0);
select tests.claim((select kept from ids), 'listener-b');
select is(tests.complete((select kept from ids), 'listener-b'), 'completed', 'B completes the kept task');
select is(tests.complete((select kept from ids), 'listener-a'), 'already_completed', 'A''s late result is a no-op');
select is(pg_temp.cleanups('1a7e0000-0000-4000-8000-000000000002/previews/1a7e0000-0000-4000-8000-0000000000a3.wav'), 0,
  'the live audio of a completed subject is never queued for removal');

-- The same after the preview was saved as a voice and then deleted: its audio is the
-- voice's now, and stays.
select tests.claim((select saved from ids), 'listener-a');
select pgmq.set_vt('design_preview', (select msg_id from tasks where id = (select saved from ids)), 0);
select tests.claim((select saved from ids), 'listener-b');
select tests.complete((select saved from ids), 'listener-b');
select tests.authenticate_as('later@example.com');
insert into voices (id, name, design_preview_id)
values ('1a7e0000-0000-4000-8000-0000000000b4', 'Saved', '1a7e0000-0000-4000-8000-0000000000a4');
delete from design_previews where id = '1a7e0000-0000-4000-8000-0000000000a4';
select tests.clear_authentication();
select is(tests.complete((select saved from ids), 'listener-a'), 'already_completed',
  'a late result for a saved and deleted preview is not adopted');
select is(pg_temp.cleanups('1a7e0000-0000-4000-8000-000000000002/previews/1a7e0000-0000-4000-8000-0000000000a4.wav'), 0,
  'nor removed: the voice saved from the preview uses that audio');

select is(tests.outcome_as('utter_worker', 'select 1 from private.task_outputs'),
  '42501: permission denied for schema private', 'the listener cannot read the output bookkeeping');

select * from finish();
rollback;
