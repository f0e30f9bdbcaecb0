-- One Realtime message per state change: a task's message carries its subject, the
-- subject's own status changes send nothing more, the balance travels in the ledger
-- row's credit_activity message, and profiles are broadcast for what no other message
-- says (a tier change, the grant of an anonymous account made permanent).
begin;
select plan(18);

select tests.create_user('one-alice@utter.test', 'a11ce000-0000-4000-8000-000000003211');
select tests.make_ready_voice('one-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000d201');
select tests.allow_concurrent_jobs(10);

create function pg_temp.sent() returns text[] language sql as $$
  select coalesce(array_agg(event || ' ' || (payload ->> 'table') || ' '
                            || coalesce(payload #>> '{record,status}', payload #>> '{record,reason}', '')
                            || coalesce(' / ' || (payload #>> '{subject,table}') || ' '
                                        || (payload #>> '{subject,record,status}'), '')
                            ), '{}')
  from realtime.messages m
$$;

-- A failure: one message for the task and its generation, one for the refund -------------
select tests.authenticate_as('one-alice@utter.test');
insert into public.generations (id, voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000d211', 'a11ce000-0000-4000-8000-00000000d201', 'Fails.', 'English');
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000d211'));
delete from realtime.messages;
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000d211'), 'test-worker', 'engine error', true, 0, 3);
select is(pg_temp.sent(), array['UPDATE tasks pending / generations pending'],
  'a retry sends one message: the task and its generation back to pending');
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000d211'));
delete from realtime.messages;
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000d211'), 'test-worker', 'bad input', false, 0, 3);
select set_eq($$ select unnest(pg_temp.sent()) $$,
  array['UPDATE tasks failed / generations failed', 'INSERT credit_activity refund'],
  'a failure sends the failed task carrying its failed generation, and the refund');
select is((select payload #>> '{subject,record,error}' from realtime.messages where payload ->> 'table' = 'tasks'),
  'bad input', 'the generation in it carries the reason');
select is((select (payload #>> '{record,balance_after}')::integer from realtime.messages
           where payload ->> 'table' = 'credit_activity'),
  tests.credits('one-alice@utter.test'), 'the refund carries the balance it left');

-- A voice: its own changes are still its own messages ----------------------------------------
delete from realtime.messages;
select tests.authenticate_as('one-alice@utter.test');
update public.voices set name = 'Alice, renamed' where id = 'a11ce000-0000-4000-8000-00000000d201';
select tests.clear_authentication();
select is(pg_temp.sent(), array['UPDATE voices ready'], 'renaming a voice sends the voice');
select is((select (payload #>> '{record,generation_count}')::integer from realtime.messages), 1,
  'with its use count, which its generations moved without a message of their own');

delete from realtime.messages;
select tests.authenticate_as('one-alice@utter.test');
select tests.upload_reference('one-alice@utter.test', 'a11ce000-0000-4000-8000-00000000d202');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000d202', 'Cloned', 'English',
        'a11ce000-0000-4000-8000-000000003211/a11ce000-0000-4000-8000-00000000d202/reference.wav',
        'Ten or more characters.');
select tests.clear_authentication();
select set_eq($$ select unnest(pg_temp.sent()) $$, array['INSERT voices pending', 'INSERT tasks pending / voices pending'],
  'a clone sends the voice and its task, which carries the voice');
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000d202'));
delete from realtime.messages;
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000d202'));
select set_eq($$ select unnest(pg_temp.sent()) $$, array['UPDATE voices ready', 'UPDATE tasks completed / voices ready'],
  'a validated clone sends the ready voice (a voice''s status may change without its task) and its task');

-- A transcription: its insert is its own, its status changes ride with its task -----------------
select tests.upload_reference('one-alice@utter.test', 'a11ce000-0000-4000-8000-00000000d203');
delete from realtime.messages;
select tests.authenticate_as('one-alice@utter.test');
insert into public.transcriptions (id, audio_object_key)
values ('a11ce000-0000-4000-8000-00000000d203',
        'a11ce000-0000-4000-8000-000000003211/a11ce000-0000-4000-8000-00000000d203/reference.wav');
select tests.clear_authentication();
select set_eq($$ select unnest(pg_temp.sent()) $$, array['INSERT tasks pending', 'INSERT transcriptions pending'],
  'a transcription sends its row and its task (made first, so without a subject yet)');
select tests.claim((select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000d203'));
select is((select payload #>> '{subject,table}' || ' ' || (payload #>> '{subject,record,id}') from realtime.messages
           where payload ->> 'table' = 'tasks' and payload #>> '{record,status}' = 'processing'),
  'transcriptions a11ce000-0000-4000-8000-00000000d203', 'its claimed task carries the transcription');
select is((select count(*)::integer from realtime.messages where payload ->> 'table' = 'transcriptions' and event = 'UPDATE'),
  0, 'which sends no message of its own for it');

-- A design preview: its audio hash, recorded while it runs, rides with its completion ----
select tests.authenticate_as('one-alice@utter.test');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000d204', 'A bright voice', 'Hello there.', 'English');
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000d204'));
delete from realtime.messages;
select worker.record_reference(tests.task_for('a11ce000-0000-4000-8000-00000000d204'), 'test-worker',
                               repeat('ab', 32));
select is_empty($$ select 1 from realtime.messages $$, 'recording a preview''s audio hash sends nothing');
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000d204'));
select is((select payload #>> '{subject,record,audio_sha256}' from realtime.messages
           where payload ->> 'table' = 'tasks' and payload #>> '{record,status}' = 'completed'),
  repeat('ab', 32), 'the completed preview in its task''s message carries it');

-- Profiles: only what no ledger row says ---------------------------------------------------
delete from realtime.messages;
update public.profiles set tier = 'paid' where id = 'a11ce000-0000-4000-8000-000000003211';
select is((select payload - 'id' from realtime.messages),
  '{"operation": "UPDATE", "schema": "public", "table": "profiles",
    "record": {"id": "a11ce000-0000-4000-8000-000000003211", "credits": 99, "tier": "paid"}}'::jsonb,
  'a tier change sends the profile, exactly {id, credits, tier}');
delete from realtime.messages;
select tests.authenticate_as('one-alice@utter.test');
insert into public.design_previews (instruct, text, language) values ('A calm voice', 'Hello.', 'English');
select tests.clear_authentication();
select is((select count(*)::integer from realtime.messages where payload ->> 'table' = 'profiles'), 0,
  'a charge sends no profile message');
select is((select (payload #>> '{record,balance_after}')::integer from realtime.messages
           where payload ->> 'table' = 'credit_activity'),
  tests.credits('one-alice@utter.test'), 'its credit_activity carries the new balance');

insert into auth.users (id, aud, role, is_anonymous)
values ('a0000000-0000-4000-8000-000000003212', 'authenticated', 'authenticated', true);
delete from realtime.messages;
update auth.users set is_anonymous = false, email = 'one-anon@utter.test'
where id = 'a0000000-0000-4000-8000-000000003212';
select is((select string_agg(event || ' ' || (payload ->> 'table') || ' ' || (payload #>> '{record,credits}'), ',')
           from realtime.messages where topic = 'user:a0000000-0000-4000-8000-000000003212'),
  'UPDATE profiles 100', 'an anonymous account made permanent hears its grant as its profile');
delete from realtime.messages;
update public.profiles set credits = credits + 1 where id = 'a0000000-0000-4000-8000-000000003212';
select is_empty($$ select 1 from realtime.messages $$,
  'in a later statement, a balance change without a tier change sends no profile message');

select * from finish();
rollback;
