-- worker.record_object (the listener's bookkeeping of an object it stored) wrote any
-- row the listener's role asked for: any bucket, any key under any owner, a negative
-- size, and over the metadata of an object a user uploaded. The listener only stores
-- task outputs, under their owner's folder in `references` or `generations`; the role
-- may record nothing else.
--   alice a11ce000-...-000000002961, bob b0b00000-...-000000002962
begin;
select plan(8);

select tests.create_user('rob-alice@utter.test', 'a11ce000-0000-4000-8000-000000002961');
select tests.create_user('rob-bob@utter.test', 'b0b00000-0000-4000-8000-000000002962');
select tests.upload_reference('rob-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b961');

select is(tests.outcome_as('utter_worker', $$ select worker.record_object('generations',
    'a11ce000-0000-4000-8000-000000002961/a11ce000-0000-4000-8000-00000000a961.wav', 1024, 'audio/wav',
    'a11ce000-0000-4000-8000-000000002961') $$),
  'ok', 'an output under its owner''s folder is recorded');
select is(tests.outcome_as('utter_worker', $$ select worker.record_object('generations',
    'a11ce000-0000-4000-8000-000000002961/a11ce000-0000-4000-8000-00000000a961.wav', 2048, 'audio/wav',
    'a11ce000-0000-4000-8000-000000002961') $$),
  'ok', 'and recorded again when a retry overwrites it');
select is(tests.outcome_as('utter_worker', $$ select worker.record_object('generations',
    'b0b00000-0000-4000-8000-000000002962/a11ce000-0000-4000-8000-00000000a962.wav', 1024, 'audio/wav',
    'a11ce000-0000-4000-8000-000000002961') $$),
  '22023: record_object: key b0b00000-0000-4000-8000-000000002962/a11ce000-0000-4000-8000-00000000a962.wav is not under its owner a11ce000-0000-4000-8000-000000002961''s folder',
  'an object under another user''s folder is refused');
select is(tests.outcome_as('utter_worker', $$ select worker.record_object('avatars',
    'a11ce000-0000-4000-8000-000000002961/x.png', 10, 'image/png', 'a11ce000-0000-4000-8000-000000002961') $$),
  '22023: record_object: unknown bucket ''avatars''', 'a bucket that is not Utter''s is refused');
select is(tests.outcome_as('utter_worker', $$ select worker.record_object('generations',
    'a11ce000-0000-4000-8000-000000002961/a11ce000-0000-4000-8000-00000000a963.wav', -1, 'audio/wav',
    'a11ce000-0000-4000-8000-000000002961') $$),
  '22023: record_object needs size_bytes >= 0, got -1', 'a negative size is refused');
select is(tests.outcome_as('utter_worker', format($$ select worker.record_object('references', %L, 1, 'audio/wav',
    'b0b00000-0000-4000-8000-000000002962') $$,
    tests.reference_key('rob-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b961'))),
  '22023: record_object: references/' || tests.reference_key('rob-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b961')
    || ' was uploaded by its owner; the listener does not overwrite uploads',
  'a user''s upload is not overwritten');
select is((select metadata ->> 'size' from storage.objects
           where name = 'a11ce000-0000-4000-8000-000000002961/a11ce000-0000-4000-8000-00000000a961.wav'),
  '2048', 'the recorded output holds its latest size');
select is((select count(*)::integer from storage.objects where bucket_id = 'generations'
           and name like 'b0b00000-0000-4000-8000-000000002962/%'), 0, 'nothing was written under bob''s folder');

select * from finish();
rollback;
