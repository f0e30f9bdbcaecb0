-- Text a person typed is trimmed of whitespace and invisible characters (zero-width
-- spaces and joiners, byte-order marks, no-break spaces) at both ends, and text with
-- nothing visible in it is refused as empty (22023) before anything is charged.
--   alice a11ce000-...-000000000001: ready voice ...a001
begin;
select plan(15);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('blank-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.make_ready_voice('blank-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
select tests.authenticate_as('blank-alice@utter.test');

select throws_ok(format($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', %L, 'English') $$, blank),
  '22023', 'text must not be empty', 'a generation of only ' || what || ' is refused')
from (values (E'   ', 'spaces'), (E'\t\n\r ', 'tabs and newlines'), (E'\u200b\u200b', 'zero-width spaces'),
             (E'\u00a0\ufeff\u2060', 'a no-break space, a BOM and a word joiner'),
             (E'\u200c\u200d\u3000', 'zero-width joiners and an ideographic space')) as b(blank, what);
select throws_ok($$ insert into public.design_previews (instruct, text, language) values (E' \u200b ', 'Hello.', 'English') $$,
  '22023', 'instruct must not be empty', 'a blank instruct is refused');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', E'\ufeff', 'English') $$,
  '22023', 'text must not be empty', 'a blank preview text is refused');
select throws_ok($$ insert into public.voices (name, design_preview_id) values (E'\u200b', gen_random_uuid()) $$,
  '22023', 'name must not be empty', 'a blank voice name is refused');
select tests.upload_reference('blank-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a002', 'Clone', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav',
            E'\u200b\u200b\u200b\u200b\u200bshort\u200b\u200b\u200b\u200b\u200b') $$,
  '22023', 'reference_transcript must be at least 10 characters',
  'invisible padding does not make a transcript long enough');
select is(tests.credits('blank-alice@utter.test'), 100, 'nothing refused was charged');

select results_eq(
  $$ insert into public.generations (voice_id, text, language)
     values ('a11ce000-0000-4000-8000-00000000a001', repeat(' ', 600) || E'Hello\u200b \n', 'English')
     returning text $$,
  $$ values ('Hello') $$, 'a generation''s text is stored trimmed');
select is(tests.credits('blank-alice@utter.test'), 99, 'and charged for what is left (1 credit, not 2)');
select results_eq(
  $$ insert into public.design_previews (instruct, text, language)
     values (E'\u00a0A warm voice\u00a0', E'  Hi \u200dthere  ', 'English') returning instruct, text $$,
  $$ values ('A warm voice', E'Hi \u200dthere') $$,
  'a preview''s instruct and text are trimmed; invisible characters inside are kept');
select results_eq(
  $$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
     values ('a11ce000-0000-4000-8000-00000000a002', E'\u200b Clone \u200b', 'English',
             'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav',
             E'  What the recording says.\n') returning name, reference_transcript $$,
  $$ values ('Clone', 'What the recording says.') $$, 'a clone''s name and transcript are trimmed');
select results_eq(
  $$ insert into public.generations (voice_id, text, language)
     values ('a11ce000-0000-4000-8000-00000000a001', E'x\u200by', 'English') returning text $$,
  $$ values (E'x\u200by') $$, 'an invisible character between visible ones is kept');

select * from finish();
rollback;
