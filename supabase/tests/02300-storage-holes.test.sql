-- The holes an adversarial pass found in Storage and the voice insert, each closed:
-- audio is readable only once the row it belongs to is finished (no refund-and-keep),
-- uploads must sit at exactly <uid>/<voice uuid>/reference.<ext>, and a voice insert
-- with a null id answers the same whether another user's object exists or not.
--   alice a11ce000-...-000000000001: ready voice ...a001
--   bob   b0b00000-...-000000000002
begin;
select plan(26);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('holes-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('holes-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('holes-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');

-- What the listener stores for a task before it settles it (worker.record_object).
create function pg_temp.store_output(task_id uuid) returns text
language sql security definer set search_path = '' as $$
  insert into storage.objects (bucket_id, name, owner)
  select private.output_object(t) ->> 'bucket', private.output_object(t) ->> 'key', null
  from public.tasks t where t.id = task_id
  returning name
$$;

-- Generations: readable from completion, never after a cancel -------------------------
insert into public.generations (id, user_id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a002', 'a11ce000-0000-4000-8000-000000000001',
   'a11ce000-0000-4000-8000-00000000a001', 'Will be completed.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a003', 'a11ce000-0000-4000-8000-000000000001',
   'a11ce000-0000-4000-8000-00000000a001', 'Will be cancelled after its upload.', 'English');
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a003'));
select pg_temp.store_output(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select pg_temp.store_output(tests.task_for('a11ce000-0000-4000-8000-00000000a003'));

select tests.authenticate_as('holes-alice@utter.test');
select is_empty($$ select 1 from storage.objects where bucket_id = 'generations' $$,
  'audio stored by a running generation is not readable yet');
update public.tasks set cancel_requested_at = now()
where generation_id = 'a11ce000-0000-4000-8000-00000000a003';
select tests.clear_authentication();
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select tests.authenticate_as('holes-alice@utter.test');
select results_eq($$ select name from storage.objects where bucket_id = 'generations' $$,
  $$ values ('a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002.wav') $$,
  'the owner reads a completed generation''s audio, and not the audio of one cancelled (and refunded) after its upload');
select tests.authenticate_as('holes-bob@utter.test');
select is_empty($$ select 1 from storage.objects where bucket_id = 'generations' $$,
  'another user reads none of it');
select tests.authenticate_as_anon();
select is_empty($$ select 1 from storage.objects $$, 'anon reads none of it');

-- Design previews: readable from completion ---------------------------------------------
select tests.clear_authentication();
insert into public.design_previews (id, user_id, instruct, text, language) values
  ('a11ce000-0000-4000-8000-00000000a004', 'a11ce000-0000-4000-8000-000000000001', 'A calm narrator', 'Hello.', 'English');
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a004'));
select pg_temp.store_output(tests.task_for('a11ce000-0000-4000-8000-00000000a004'));
select tests.authenticate_as('holes-alice@utter.test');
select is_empty($$ select 1 from storage.objects where name like '%/previews/%' $$,
  'a running preview''s stored audio is not readable');
select tests.clear_authentication();
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a004'));
select tests.authenticate_as('holes-alice@utter.test');
select is((select count(*)::int from storage.objects where name like '%/previews/%'), 1,
  'a completed preview''s audio is readable by its owner');
select tests.authenticate_as('holes-bob@utter.test');
select is_empty($$ select 1 from storage.objects where name like '%/previews/%' $$,
  'another user cannot read the preview audio');

-- Voices: the upload while a voice names it, the normalised audio once ready ------------------
select tests.clear_authentication();
select tests.upload_reference('holes-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a005');
select tests.authenticate_as('holes-alice@utter.test');
select is_empty($$ select 1 from storage.objects where name like '%/a11ce000-0000-4000-8000-00000000a005/%' $$,
  'an upload no voice names is not readable');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000a005', 'Pending', 'English',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a005/reference.wav',
        'Ten or more characters.');
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a005'));
select pg_temp.store_output(tests.task_for('a11ce000-0000-4000-8000-00000000a005'));
select tests.authenticate_as('holes-alice@utter.test');
select results_eq(
  $$ select storage.filename(name) from storage.objects where name like '%/a11ce000-0000-4000-8000-00000000a005/%' $$,
  $$ values ('reference.wav') $$,
  'a pending voice''s upload is readable, its normalised audio not yet');
select tests.clear_authentication();
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a005'));
select tests.authenticate_as('holes-alice@utter.test');
select is((select count(*)::int from storage.objects where name like '%/a11ce000-0000-4000-8000-00000000a005/%'), 2,
  'a ready voice''s normalised audio is readable');
select tests.authenticate_as('holes-bob@utter.test');
select is_empty($$ select 1 from storage.objects where bucket_id = 'references' $$,
  'another user reads none of alice''s references');

-- Upload keys ---------------------------------------------------------------------------
select tests.authenticate_as('holes-alice@utter.test');
select lives_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010/reference.Mp3', auth.uid()) $$,
  'a key <uid>/<voice uuid>/reference.<ext> is accepted');
select throws_ok(format($$ insert into storage.objects (bucket_id, name, owner) values ('references', %L, auth.uid()) $$, k),
  '42501', 'new row violates row-level security policy for table "objects"', 'refused: ' || why)
from (values
  ('a11ce000-0000-4000-8000-000000000001/../reference.wav', 'a .. segment'),
  ('a11ce000-0000-4000-8000-000000000001//reference.wav', 'an empty voice folder'),
  ('a11ce000-0000-4000-8000-000000000001/my-voice/reference.wav', 'a voice folder that is not a uuid'),
  ('a11ce000-0000-4000-8000-000000000001/A11CE000-0000-4000-8000-00000000A011/reference.wav', 'an upper-case uuid (never a voice id)'),
  ('a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a012/../a11ce000-0000-4000-8000-00000000a013/reference.wav', 'a path that climbs out'),
  ('/a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a014/reference.wav', 'a leading slash'),
  ('a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a015/reference.wav/', 'a trailing slash'),
  ('a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a016/reference.wav.exe', 'a second extension'),
  ('b0b00000-0000-4000-8000-000000000002/a11ce000-0000-4000-8000-00000000a017/reference.wav', 'another user''s folder')
) as bad(k, why);
select tests.authenticate_as_anon();
select throws_ok($$ insert into storage.objects (bucket_id, name) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a018/reference.wav') $$,
  '42501', 'new row violates row-level security policy for table "objects"', 'anon cannot upload');

-- The existence oracle: a null id is refused before anything is looked up -----------------
select tests.clear_authentication();
select tests.upload_reference('holes-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a020');
select tests.authenticate_as('holes-bob@utter.test');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values (null, 'Probe', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a020/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'id must not be null', 'a null id naming another user''s existing upload is refused as a null id');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values (null, 'Probe', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a021/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'id must not be null', 'a null id naming a key that does not exist gets the very same answer');
select throws_ok($$ insert into public.voices (id, name, design_preview_id)
    values (null, 'Probe', 'a11ce000-0000-4000-8000-00000000a004') $$,
  '22023', 'id must not be null', 'a null id is refused when saving a design too');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('b0b00000-0000-4000-8000-00000000b020', 'Probe', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a020/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'reference_object_key must be b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b020/reference.<wav|mp3|m4a>, got ''a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a020/reference.wav''',
  'with an id, another user''s key is refused by its shape, before any lookup');

select * from finish();
rollback;
