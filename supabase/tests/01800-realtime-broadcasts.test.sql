-- Every change the app shows reaches its owner's private topic user:<uid> as a
-- broadcast {operation, schema, table, record}, one message per state change: a
-- task's message carries its subject (generation, preview, voice or transcription) as
-- {subject: {table, record}}, and the balance travels in the charge or refund's
-- credit_activity row. Records carry no internal columns, and changes to internal
-- columns alone (heartbeats) send nothing. Each scenario starts from an empty
-- realtime.messages, so the assertions see only what it sent.
begin;
select plan(31);

select tests.create_user('live-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('live-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('live-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');

-- Generate ------------------------------------------------------------------------------
delete from realtime.messages;
select tests.authenticate_as('live-alice@utter.test');
insert into public.generations (id, voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000a010', 'a11ce000-0000-4000-8000-00000000a001', 'Live words.', 'English');
select tests.clear_authentication();
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') from realtime.messages
     where topic = 'user:a11ce000-0000-4000-8000-000000000001' and private and extension = 'broadcast' $$,
  array['INSERT tasks', 'INSERT credit_activity'],
  'a generation insert broadcasts its task (carrying the generation, which names its voice) and the charge');
select is((select count(*)::int from realtime.messages), 2, 'exactly those two messages, on no other topic');
-- realtime.send adds a top-level "id" (the message's id) to every payload; the rest is exact.
select set_eq(
  $$ select jsonb_object_keys(payload - 'id') from realtime.messages where payload ->> 'table' = 'tasks' $$,
  array['operation', 'schema', 'table', 'record', 'subject'],
  'a task message is {operation, schema, table, record, subject}');
select is((select payload #>> '{subject,table}' || ' ' || (payload #>> '{subject,record,id}') || ' '
                  || (payload #>> '{subject,record,status}')
           from realtime.messages where payload ->> 'table' = 'tasks'),
  'generations a11ce000-0000-4000-8000-00000000a010 pending', 'its subject is the new generation, pending');
select is((select (payload #>> '{record,balance_after}') || ' ' || (payload #>> '{record,amount}')
           from realtime.messages where payload ->> 'table' = 'credit_activity'),
  '99 -1', 'the charge carries the new balance (no separate balance message)');
select set_eq(
  $$ select jsonb_object_keys(payload #> '{subject,record}') from realtime.messages where payload ->> 'table' = 'tasks' $$,
  array['id', 'voice_id', 'voice_name', 'text', 'language', 'regenerated_from', 'status', 'audio_object_key',
        'duration_seconds', 'generation_seconds', 'error', 'created_at', 'updated_at', 'completed_at'],
  'a generation record has every column the app shows and no user_id');
select set_eq(
  $$ select jsonb_object_keys(payload -> 'record') from realtime.messages where payload ->> 'table' = 'tasks' $$,
  array['id', 'type', 'status', 'progress', 'error', 'cost', 'attempts', 'generation_id', 'design_preview_id',
        'voice_id', 'cancel_requested_at', 'dismissed_at', 'created_at', 'started_at', 'ended_at'],
  'a task record leaves out msg_id, engine_call_id, claimed_by, heartbeat_at and user_id');
select is((select payload #>> '{record,status}' || '/' || (payload #>> '{record,cost}') from realtime.messages
           where payload ->> 'table' = 'tasks'),
  'pending/1', 'the task broadcast shows it pending at its cost');

-- Claim, heartbeats, completion ---------------------------------------------------------
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a010')::text, true);
delete from realtime.messages;
select tests.claim(current_setting('test.task')::uuid, 'worker-1');
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') || ' ' || (payload #>> '{record,status}') from realtime.messages $$,
  array['UPDATE tasks processing'],
  'a claim broadcasts one message: the task turning processing');
select is((select payload #>> '{subject,table}' || ' ' || (payload #>> '{subject,record,status}') from realtime.messages),
  'generations processing', 'it carries the generation turning processing');

delete from realtime.messages;
select worker.heartbeat(current_setting('test.task')::uuid, 'worker-1', null, 60);
select worker.record_engine_call(current_setting('test.task')::uuid, 'worker-1', 'fc-1');
select is_empty($$ select 1 from realtime.messages $$,
  'a heartbeat without progress and a recorded engine call broadcast nothing');

select worker.heartbeat(current_setting('test.task')::uuid, 'worker-1', 0.25, 60);
select is((select event || ' ' || (payload ->> 'table') || ' ' || (payload #>> '{record,progress}') from realtime.messages),
  'UPDATE tasks 0.25', 'progress is broadcast');
select is((select payload #>> '{subject,record,status}' from realtime.messages), 'processing',
  'with the generation as it stands');

delete from realtime.messages;
select tests.complete(current_setting('test.task')::uuid, 'worker-1');
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') || ' ' || (payload #>> '{record,status}') from realtime.messages $$,
  array['UPDATE tasks completed'],
  'completion broadcasts one message: the finished task');
select is((select payload #>> '{subject,record,audio_object_key}' from realtime.messages where payload ->> 'table' = 'tasks'),
  'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010.wav',
  'the completed generation carries its audio key for a signed URL');
delete from realtime.messages;
select tests.complete(current_setting('test.task')::uuid, 'worker-1');
select is_empty($$ select 1 from realtime.messages $$, 'a repeated completion broadcasts nothing');

-- Delete ------------------------------------------------------------------------------
select tests.authenticate_as('live-alice@utter.test');
delete from public.generations where id = 'a11ce000-0000-4000-8000-00000000a010';
select tests.clear_authentication();
select is((select payload - 'id' from realtime.messages where event = 'DELETE'),
  '{"operation": "DELETE", "schema": "public", "table": "generations",
    "record": {"id": "a11ce000-0000-4000-8000-00000000a010"}}'::jsonb,
  'a delete broadcasts only the id of the deleted row');
select is((select payload #>> '{record,generation_id}' from realtime.messages where payload ->> 'table' = 'tasks'), null,
  'the task left behind is broadcast detached from it');
select is((select payload -> 'subject' from realtime.messages where payload ->> 'table' = 'tasks'), 'null'::jsonb,
  'and with no subject');

-- Clone ---------------------------------------------------------------------------------
delete from realtime.messages;
select tests.authenticate_as('live-alice@utter.test');
select tests.upload_reference('live-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000a002', 'Second', 'English',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav', 'Ten or more characters.');
select tests.clear_authentication();
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') from realtime.messages $$,
  array['INSERT voices', 'INSERT tasks'],
  'a clone broadcasts the voice and its task, and no balance change (it is free)');
select ok((select not (payload -> 'record' ? 'user_id') and payload #>> '{record,status}' = 'pending'
           from realtime.messages where payload ->> 'table' = 'voices'),
  'the voice record is pending and has no user_id');
delete from realtime.messages;
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select is((select payload #>> '{record,status}' from realtime.messages where payload ->> 'table' = 'voices'), 'ready',
  'a validated clone is broadcast ready');

-- Design preview, then cancel ---------------------------------------------------------------
delete from realtime.messages;
select tests.authenticate_as('live-alice@utter.test');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a0d1', 'A calm narrator', 'Hello there.', 'English');
select tests.clear_authentication();
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') from realtime.messages $$,
  array['INSERT tasks', 'INSERT credit_activity'],
  'a design preview broadcasts its task (carrying the preview) and the charge');
select ok((select payload #>> '{subject,table}' = 'design_previews' and not (payload #> '{subject,record}' ? 'user_id')
           from realtime.messages where payload ->> 'table' = 'tasks'),
  'the preview record has no user_id');
delete from realtime.messages;
select tests.authenticate_as('live-alice@utter.test');
update public.tasks set cancel_requested_at = now() where design_preview_id = 'a11ce000-0000-4000-8000-00000000a0d1';
select tests.clear_authentication();
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') || ' '
            || coalesce(payload #>> '{record,status}', payload #>> '{record,reason}') || ' '
            || coalesce(payload #>> '{subject,record,status}', payload #>> '{record,balance_after}')
     from realtime.messages $$,
  array['UPDATE tasks cancelled cancelled', 'INSERT credit_activity refund 99'],
  'a cancel broadcasts the cancelled task (carrying the cancelled preview) and the refund with the balance');

-- Saving a design, then deleting the voice --------------------------------------------------
delete from realtime.messages;
select tests.make_completed_preview('live-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a0d2');
delete from realtime.messages;
select tests.authenticate_as('live-alice@utter.test');
insert into public.voices (id, name, design_preview_id)
values ('a11ce000-0000-4000-8000-00000000a003', 'Designed', 'a11ce000-0000-4000-8000-00000000a0d2');
select tests.clear_authentication();
select is((select string_agg(event || ' ' || (payload ->> 'table') || ' ' || (payload #>> '{record,status}'), ',')
           from realtime.messages),
  'INSERT voices ready', 'saving a design broadcasts one ready voice and no task');
delete from realtime.messages;
select tests.authenticate_as('live-alice@utter.test');
delete from public.voices where id = 'a11ce000-0000-4000-8000-00000000a003';
select tests.clear_authentication();
select is((select string_agg(event || ' ' || (payload ->> 'table') || ' ' || (payload #>> '{record,id}'), ',')
           from realtime.messages),
  'DELETE voices a11ce000-0000-4000-8000-00000000a003', 'deleting a voice broadcasts its id');

-- Everything above went to alice alone.
select is(tests.broadcasts('live-bob@utter.test'), 0, 'bob received none of alice''s changes');
select is_empty($$ select 1 from realtime.messages where topic <> 'user:a11ce000-0000-4000-8000-000000000001' or not private $$,
  'every message is private and on alice''s topic');

-- Broadcasts are delivered once the owner joins their topic (see 01200); Postgres
-- Changes subscribers get the same tables through the publication.
select set_eq(
  $$ select tablename::text from pg_publication_tables where pubname = 'supabase_realtime' $$,
  array['tasks', 'generations', 'voices', 'design_previews', 'profiles', 'purchases', 'transcriptions',
        'generation_segments'],
  'the same tables are published for Postgres Changes');
select ok(tests.credits_match_ledger(), 'every balance equals its ledger');

select * from finish();
rollback;
