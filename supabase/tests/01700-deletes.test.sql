-- Deleting a row cancels its unfinished work (refunded) and enqueues the removal of
-- its stored objects on storage_cleanup, in the deleting transaction. History
-- survives: generations outlive their voice, ended tasks outlive their subject.
--   alice a11ce000-...-000000000001
--   voices:      a001 ready (kept), a002 ready with generations, a003 pending clone,
--                a004 designed from preview a0d3, a005 designed from preview a0d4
--   generations: a010 completed, a020 pending, a030 completed + a040 pending (voice a002)
--   previews:    a0d1 completed, a0d2 pending, a0d3 and a0d4 completed and saved
begin;
select plan(33);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('delete-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('delete-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('delete-alice@utter.test', 'Kept', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('delete-alice@utter.test', 'Doomed', 'a11ce000-0000-4000-8000-00000000a002');
-- The listener stored the normalised audio of voice a002.
select worker.record_object('references',
  'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/normalized.wav', 100, 'audio/wav',
  'a11ce000-0000-4000-8000-000000000001');
insert into public.generations (id, user_id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a010', 'a11ce000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-00000000a001', 'Done.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a020', 'a11ce000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-00000000a001', 'Waiting.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a030', 'a11ce000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-00000000a002', 'Done too.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a040', 'a11ce000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-00000000a002', 'Waiting too.', 'English');
select tests.claim(tests.task_for(g)), tests.complete(tests.task_for(g))
from unnest(array['a11ce000-0000-4000-8000-00000000a010', 'a11ce000-0000-4000-8000-00000000a030']::uuid[]) g;
select tests.make_completed_preview('delete-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a0d1');
select tests.make_completed_preview('delete-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a0d3');
select tests.make_completed_preview('delete-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a0d4');

select tests.authenticate_as('delete-alice@utter.test');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a0d2', 'A calm narrator', 'Not yet.', 'English');
select tests.upload_reference('delete-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a003', 'mp3');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000a003', 'Pending', 'English',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.mp3', 'Ten or more characters.');
insert into public.voices (id, name, design_preview_id) values
  ('a11ce000-0000-4000-8000-00000000a004', 'Designed', 'a11ce000-0000-4000-8000-00000000a0d3'),
  ('a11ce000-0000-4000-8000-00000000a005', 'Designed too', 'a11ce000-0000-4000-8000-00000000a0d4');
select tests.clear_authentication();
select is(tests.queued('storage_cleanup'), 0, 'nothing is queued for cleanup before the deletes');

-- Generations ------------------------------------------------------------------------
select tests.authenticate_as('delete-alice@utter.test');
delete from public.generations where id = 'a11ce000-0000-4000-8000-00000000a010';
select tests.clear_authentication();
select is_empty($$ select 1 from public.generations where id = 'a11ce000-0000-4000-8000-00000000a010' $$,
  'a completed generation can be deleted');
select is((select message from pgmq.q_storage_cleanup order by msg_id desc limit 1),
  '{"bucket": "generations", "keys": ["a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010.wav"]}'::jsonb,
  'its audio is queued for removal from bucket generations');
select is((select status || '/' || coalesce(generation_id::text, 'detached') from public.tasks t
           where t.user_id = 'a11ce000-0000-4000-8000-000000000001' and t.type = 'generate' and t.generation_id is null),
  'completed/detached', 'its completed task stays, detached, as history');
select is(tests.ledger_rows('delete-alice@utter.test', 'refund'), 0, 'deleting delivered work refunds nothing');

select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a020')::text, true);
select set_config('test.credits', tests.credits('delete-alice@utter.test')::text, true);
select tests.authenticate_as('delete-alice@utter.test');
delete from public.generations where id = 'a11ce000-0000-4000-8000-00000000a020';
select tests.clear_authentication();
select is((select status || '/' || error from public.tasks where id = current_setting('test.task')::uuid),
  'cancelled/generation deleted', 'deleting a pending generation cancels its task');
select is(tests.credits('delete-alice@utter.test'), current_setting('test.credits')::int + 1,
  'the deleted pending generation is refunded');
select is((select count(*)::int from pgmq.q_generate q join public.tasks t on t.msg_id = q.msg_id
           where t.id = current_setting('test.task')::uuid), 0, 'its message left the generate queue');
select is((select message from pgmq.q_storage_cleanup order by msg_id desc limit 1),
  '{"bucket": "generations", "keys": ["a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a020.wav"]}'::jsonb,
  'the key its audio would have had is queued for removal, in case a listener already wrote it');

-- Voices -------------------------------------------------------------------------------
select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a040')::text, true);
select set_config('test.credits', tests.credits('delete-alice@utter.test')::text, true);
select tests.authenticate_as('delete-alice@utter.test');
delete from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002';
select tests.clear_authentication();
select results_eq(
  $$ select id, voice_id, voice_name, status from public.generations
     where id in ('a11ce000-0000-4000-8000-00000000a030', 'a11ce000-0000-4000-8000-00000000a040') order by id $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a030'::uuid, null::uuid, 'Doomed', 'completed'),
            ('a11ce000-0000-4000-8000-00000000a040'::uuid, null::uuid, 'Doomed', 'cancelled') $$,
  'a deleted voice''s generations stay, unlinked, with its name; the unfinished one is cancelled');
select is((select error from public.tasks where id = current_setting('test.task')::uuid), 'voice deleted',
  'the unfinished generation was cancelled because its voice was deleted');
select is(tests.credits('delete-alice@utter.test'), current_setting('test.credits')::int + 1,
  'and refunded');
select is((select message ->> 'bucket' from pgmq.q_storage_cleanup order by msg_id desc limit 1), 'references',
  'a deleted voice''s audio is queued for removal from bucket references');
select set_eq(
  $$ select k from (select message from pgmq.q_storage_cleanup order by msg_id desc limit 1) last,
            jsonb_array_elements_text(last.message -> 'keys') k $$,
  array['a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/normalized.wav'],
  'the keys are its recording and its normalised audio, once each');

select set_config('test.task', tests.task_for('a11ce000-0000-4000-8000-00000000a003')::text, true);
select set_config('test.credits', tests.credits('delete-alice@utter.test')::text, true);
select tests.authenticate_as('delete-alice@utter.test');
delete from public.voices where id = 'a11ce000-0000-4000-8000-00000000a003';
select tests.clear_authentication();
select is((select status || '/' || error || '/' || coalesce(voice_id::text, 'detached') from public.tasks
           where id = current_setting('test.task')::uuid),
  'cancelled/voice deleted/detached', 'deleting a voice still being cloned cancels and detaches the clone task');
select is(tests.queued('clone'), 0, 'the clone message left its queue');
select is(tests.credits('delete-alice@utter.test'), current_setting('test.credits')::int,
  'the free clone refunds nothing');
select is((select message from pgmq.q_storage_cleanup order by msg_id desc limit 1),
  '{"bucket": "references", "keys": ["a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.mp3"]}'::jsonb,
  'its uploaded recording is queued for removal');

-- Design previews ---------------------------------------------------------------------
select tests.authenticate_as('delete-alice@utter.test');
delete from public.design_previews where id = 'a11ce000-0000-4000-8000-00000000a0d1';
select tests.clear_authentication();
select is((select message from pgmq.q_storage_cleanup order by msg_id desc limit 1),
  '{"bucket": "references", "keys": ["a11ce000-0000-4000-8000-000000000001/previews/a11ce000-0000-4000-8000-00000000a0d1.wav"]}'::jsonb,
  'a deleted preview''s audio is queued for removal');

select set_config('test.credits', tests.credits('delete-alice@utter.test')::text, true);
select tests.authenticate_as('delete-alice@utter.test');
delete from public.design_previews where id = 'a11ce000-0000-4000-8000-00000000a0d2';
select tests.clear_authentication();
select is(tests.credits('delete-alice@utter.test'), current_setting('test.credits')::int + 1,
  'deleting a pending preview cancels and refunds it');
select is(tests.queued('design_preview'), 0, 'its message left the design_preview queue');

-- A saved preview's audio belongs to its voice.
select set_config('test.cleanups', tests.queued('storage_cleanup')::text, true);
select tests.authenticate_as('delete-alice@utter.test');
delete from public.design_previews where id = 'a11ce000-0000-4000-8000-00000000a0d3';
select tests.clear_authentication();
select is(tests.queued('storage_cleanup'), current_setting('test.cleanups')::int,
  'deleting a saved preview queues no removal: its audio is the voice''s');
select is((select status || '/' || coalesce(design_preview_id::text, 'unlinked') || '/' || normalized_object_key
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000a004'),
  'ready/unlinked/a11ce000-0000-4000-8000-000000000001/previews/a11ce000-0000-4000-8000-00000000a0d3.wav',
  'the designed voice stays ready with that audio');
select tests.authenticate_as('delete-alice@utter.test');
delete from public.voices where id = 'a11ce000-0000-4000-8000-00000000a004';
select tests.clear_authentication();
select is((select message from pgmq.q_storage_cleanup order by msg_id desc limit 1),
  '{"bucket": "references", "keys": ["a11ce000-0000-4000-8000-000000000001/previews/a11ce000-0000-4000-8000-00000000a0d3.wav"]}'::jsonb,
  'deleting that voice afterwards removes the audio');

-- While its preview exists, a designed voice's audio stays with the preview.
select set_config('test.cleanups', tests.queued('storage_cleanup')::text, true);
select tests.authenticate_as('delete-alice@utter.test');
delete from public.voices where id = 'a11ce000-0000-4000-8000-00000000a005';
select tests.clear_authentication();
select is(tests.queued('storage_cleanup'), current_setting('test.cleanups')::int,
  'deleting a designed voice whose preview still exists removes no audio');
select tests.authenticate_as('delete-alice@utter.test');
select lives_ok($$ insert into public.voices (id, name, design_preview_id)
    values ('a11ce000-0000-4000-8000-00000000a006', 'Saved again', 'a11ce000-0000-4000-8000-00000000a0d4') $$,
  'so the preview can be saved again, with audio that still exists');
select tests.clear_authentication();

-- Nothing the user deleted touched the voice they kept, or anyone else.
select is((select status from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'), 'ready',
  'the voice alice kept is still ready');
select ok(tests.credits_match_ledger(), 'every balance equals its ledger after the deletes');

-- Deleting an account ------------------------------------------------------------------
select tests.make_ready_voice('delete-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
insert into public.generations (id, user_id, voice_id, text, language) values
  ('b0b00000-0000-4000-8000-00000000b010', 'b0b00000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-00000000b001', 'Done.', 'English'),
  ('b0b00000-0000-4000-8000-00000000b020', 'b0b00000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-00000000b001', 'Waiting.', 'English');
select tests.claim(tests.task_for('b0b00000-0000-4000-8000-00000000b010'));
select tests.complete(tests.task_for('b0b00000-0000-4000-8000-00000000b010'));
select tests.make_completed_preview('delete-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b0d1');
select set_config('test.cleanups', tests.queued('storage_cleanup')::text, true);
select lives_ok($$ delete from auth.users where id = 'b0b00000-0000-4000-8000-000000000002' $$,
  'an account with finished and unfinished work can be deleted');
select is(
  (select count(*)::int from public.profiles where id = 'b0b00000-0000-4000-8000-000000000002')
  + (select count(*)::int from public.voices where user_id = 'b0b00000-0000-4000-8000-000000000002')
  + (select count(*)::int from public.generations where user_id = 'b0b00000-0000-4000-8000-000000000002')
  + (select count(*)::int from public.design_previews where user_id = 'b0b00000-0000-4000-8000-000000000002')
  + (select count(*)::int from public.tasks where user_id = 'b0b00000-0000-4000-8000-000000000002')
  + (select count(*)::int from private.credit_ledger where user_id = 'b0b00000-0000-4000-8000-000000000002'),
  0, 'the account''s profile, voices, generations, previews, tasks and ledger are gone');
select set_eq(
  $$ select k from pgmq.q_storage_cleanup q, jsonb_array_elements_text(q.message -> 'keys') k
     where k like 'b0b00000-0000-4000-8000-000000000002/%' $$,
  array['b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b010.wav',
        'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b020.wav',
        'b0b00000-0000-4000-8000-000000000002/previews/b0b00000-0000-4000-8000-00000000b0d1.wav',
        'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/reference.wav',
        'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/normalized.wav'],
  'every object the account had is queued for removal');
select is_empty(
  $$ select 1 from pgmq.q_generate q where q.message ->> 'task_id' not in (select id::text from public.tasks) $$,
  'no queued message is left for the deleted account''s work');
select ok(tests.credits_match_ledger(), 'the remaining balances still equal their ledgers');

select * from finish();
rollback;
