-- The sweeper (private.sweep, run by pg_cron): reference uploads that no voice of their
-- uploader was made from within settings.abandoned_upload_after are queued once for the
-- storage_cleanup job, and a voice can no longer be made from them; old request
-- counters are pruned.
--   alice a11ce000-...-000000000001, bob b0b00000-...-000000000002
begin;
select plan(13);

select tests.create_user('sweep-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('sweep-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
-- a001: abandoned; a002: became a voice; a003: recent; b001: bob's voice id, uploaded under
-- alice's folder (never hers to use); the listener's own objects are never swept.
select tests.upload_reference('sweep-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('sweep-alice@utter.test', 'Kept', 'a11ce000-0000-4000-8000-00000000a002');
select tests.upload_reference('sweep-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a003');
select tests.make_ready_voice('sweep-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
select tests.upload_reference('sweep-alice@utter.test', 'b0b00000-0000-4000-8000-00000000b001');
insert into storage.objects (bucket_id, name) values
  ('references', 'a11ce000-0000-4000-8000-000000000001/previews/a11ce000-0000-4000-8000-00000000a004.wav');
update storage.objects set created_at = now() - interval '25 hours'
where name not like '%a11ce000-0000-4000-8000-00000000a003%';
update storage.objects set created_at = now() - interval '1 hour'
where name like '%a11ce000-0000-4000-8000-00000000a003%';
select set_config('test.cleanups_before', tests.queued('storage_cleanup')::text, true);

select is(private.sweep() ->> 'uploads_queued', '2', 'the sweep queues the two abandoned uploads');
select is(tests.queued('storage_cleanup'), current_setting('test.cleanups_before')::int + 1,
  'in one storage_cleanup message');
select results_eq(
  $$ select jsonb_array_elements_text(message -> 'keys') from pgmq.q_storage_cleanup
     where message ->> 'bucket' = 'references' order by msg_id desc limit 2 $$,
  $$ values ('a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav'),
            ('a11ce000-0000-4000-8000-000000000001/b0b00000-0000-4000-8000-00000000b001/reference.wav') $$,
  'naming the upload no voice came from and the one under another user''s voice id');
select is(private.sweep() ->> 'uploads_queued', '0', 'a second sweep queues nothing again');

select tests.authenticate_as('sweep-alice@utter.test');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Late', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'the upload at references/a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav expired and is being removed',
  'a voice cannot be made from an upload on its way out');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a003', 'On time', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav',
            'Ten or more characters.') $$,
  'a recent upload still becomes a voice');
select throws_ok($$ select private.sweep() $$, '42501', 'permission denied for schema private',
  'a user cannot run the sweeper');
select tests.authenticate_as_anon();
select throws_ok($$ select private.sweep() $$, '42501', 'permission denied for schema private',
  'anon cannot run the sweeper');
select tests.clear_authentication();

-- The listener removed the object (worker.forget_object): its sweep record goes too.
delete from storage.objects
where name = 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav';
select is(private.sweep() ->> 'sweeps_forgotten', '1', 'the record of a removed upload is forgotten');
select tests.upload_reference('sweep-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a001');
select tests.authenticate_as('sweep-alice@utter.test');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Again', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav',
            'Ten or more characters.') $$,
  'uploaded again, the recording becomes a voice');
select tests.clear_authentication();

update private.settings set abandoned_upload_after = '30 minutes';
select tests.upload_reference('sweep-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a005');
update storage.objects set created_at = now() - interval '31 minutes'
where name like '%a11ce000-0000-4000-8000-00000000a005%';
select is(private.sweep() ->> 'uploads_queued', '1', 'an operator sets how long an upload may wait');

insert into private.request_counts (user_id, task_type, window_start, requests) values
  ('a11ce000-0000-4000-8000-000000000001', 'generate', now() - interval '2 days', 5),
  ('a11ce000-0000-4000-8000-000000000001', 'generate', now() - interval '1 hour', 5);
select is(private.sweep() ->> 'counters_pruned', '1', 'request counters older than a day are pruned');
select is((select count(*)::int from private.request_counts where window_start = now() - interval '1 hour'), 1,
  'recent counters stay');

select * from finish();
rollback;
