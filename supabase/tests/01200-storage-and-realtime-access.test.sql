-- Storage and Realtime authorise through RLS on storage.objects and realtime.messages,
-- evaluated as the caller: Storage inserts (bucket_id, name, owner) as the uploading
-- user; Realtime sets realtime.topic to the channel being joined.
begin;
select plan(30);

select tests.create_user('access-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('access-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
-- What the listener stored for each of them.
insert into storage.objects (bucket_id, name, owner) values
  ('references', 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/normalized.wav', null),
  ('references', 'a11ce000-0000-4000-8000-000000000001/previews/a11ce000-0000-4000-8000-00000000a003.wav', null),
  ('generations', 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002.wav', null),
  ('references', 'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/reference.wav',
   'b0b00000-0000-4000-8000-000000000002'),
  ('generations', 'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b002.wav', null);

-- Storage: uploads -----------------------------------------------------------------
select tests.authenticate_as('access-alice@utter.test');
select lives_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav', auth.uid()) $$,
  'a user uploads a WAV reference under <uid>/<voice_id>/');
select lives_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.mp3', auth.uid()) $$,
  'a user uploads an MP3 reference');
select lives_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a012/reference.m4a', auth.uid()) $$,
  'a user uploads an M4A reference');
select lives_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a016/reference.WAV', auth.uid()) $$,
  'the extension may be upper case, as the voice insert accepts it');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a013/reference.exe', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a reference must be WAV, MP3 or M4A');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a014/normalized.wav', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a user cannot write the normalised audio the listener owns');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/previews/a11ce000-0000-4000-8000-00000000a015.wav', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a user cannot write preview audio');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/reference.wav', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a reference needs its voice folder');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a016/extra/reference.wav', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a reference cannot sit deeper than <uid>/<voice_id>/');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('references',
    'b0b00000-0000-4000-8000-000000000002/a11ce000-0000-4000-8000-00000000a017/reference.wav', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a user cannot upload into another user''s folder');
select throws_ok($$ insert into storage.objects (bucket_id, name, owner) values ('generations',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a018.wav', auth.uid()) $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'a user never writes to the generations bucket');

-- Storage: reads, updates, deletes --------------------------------------------------
-- Audio is readable only once a finished row of the user's names it (02300); none here.
select is((select count(*)::int from storage.objects where bucket_id = 'references'), 0,
  'a user reads no upload or listener audio in their folder that no finished row names');
select is_empty($$ select 1 from storage.objects where name like 'b0b00000-0000-4000-8000-000000000002/%' $$,
  'a user sees none of another user''s objects');
select is_empty($$ select name from storage.objects where bucket_id = 'generations' $$,
  'a user reads no generated audio of theirs that no completed generation names');
with moved as (
  update storage.objects set name = 'a11ce000-0000-4000-8000-000000000001/elsewhere/reference.wav'
  where bucket_id = 'references' returning 1
)
select is(count(*)::int, 0, 'a user cannot move or overwrite stored objects') from moved;
with deleted as (delete from storage.objects returning 1)
select is(count(*)::int, 0, 'a user cannot delete stored objects (deletes go through the rows)') from deleted;

select tests.authenticate_as_anon();
select is_empty($$ select 1 from storage.objects $$, 'anon reads no stored object');
select throws_ok($$ insert into storage.objects (bucket_id, name) values ('references',
    'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a019/reference.wav') $$,
  '42501', 'new row violates row-level security policy for table "objects"', 'anon cannot upload');

select tests.authenticate_as_service_role();
select is((select count(*)::int from storage.objects), 9, 'service_role reads every object');

-- Realtime: private topics user:<uid> ----------------------------------------------
select tests.clear_authentication();
select realtime.send('{"n": 1}'::jsonb, 'INSERT', 'user:a11ce000-0000-4000-8000-000000000001', true);
select realtime.send('{"n": 2}'::jsonb, 'UPDATE', 'user:a11ce000-0000-4000-8000-000000000001', true);
select realtime.send('{"n": 3}'::jsonb, 'INSERT', 'user:b0b00000-0000-4000-8000-000000000002', true);

select tests.authenticate_as('access-alice@utter.test');
select set_config('realtime.topic', 'user:a11ce000-0000-4000-8000-000000000001', true);
select results_eq(
  $$ select (payload ->> 'n')::int from realtime.messages order by 1 $$,
  $$ values (1), (2) $$,
  'joined to their own topic, a user receives exactly that topic''s broadcasts');
select lives_ok($$ insert into realtime.messages (topic, extension, event, payload, private)
    values ('user:a11ce000-0000-4000-8000-000000000001', 'broadcast', 'ping', '{}', true) $$,
  'a user may broadcast on their own topic');
select throws_ok($$ insert into realtime.messages (topic, extension, event, payload, private)
    values ('user:b0b00000-0000-4000-8000-000000000002', 'broadcast', 'ping', '{}', true) $$,
  '42501', 'new row violates row-level security policy for table "messages"',
  'joined to their own topic, a user cannot write into another user''s');
select throws_ok($$ insert into realtime.messages (topic, extension, event, payload, private)
    values ('user:a11ce000-0000-4000-8000-000000000001', 'presence', 'ping', '{}', true) $$,
  '42501', 'new row violates row-level security policy for table "messages"',
  'only broadcast messages are allowed on a user topic');

select set_config('realtime.topic', 'user:b0b00000-0000-4000-8000-000000000002', true);
select is_empty($$ select 1 from realtime.messages $$,
  'a user cannot join another user''s topic');
select throws_ok($$ insert into realtime.messages (topic, extension, event, payload, private)
    values ('user:b0b00000-0000-4000-8000-000000000002', 'broadcast', 'ping', '{}', true) $$,
  '42501', 'new row violates row-level security policy for table "messages"',
  'a user cannot broadcast on another user''s topic');

select set_config('realtime.topic', 'public:lobby', true);
select is_empty($$ select 1 from realtime.messages $$, 'a user receives nothing on an unrelated topic');

select tests.authenticate_as_anon();
select set_config('realtime.topic', 'user:a11ce000-0000-4000-8000-000000000001', true);
select is_empty($$ select 1 from realtime.messages $$, 'anon cannot join a user topic');
select throws_ok($$ insert into realtime.messages (topic, extension, event, payload, private)
    values ('user:a11ce000-0000-4000-8000-000000000001', 'broadcast', 'ping', '{}', true) $$,
  '42501', 'new row violates row-level security policy for table "messages"',
  'anon cannot broadcast on a user topic');

-- realtime.send on a topic not the caller's is swallowed (like Supabase), not delivered.
select tests.authenticate_as('access-alice@utter.test');
set local client_min_messages = error;  -- the refused send is reported as a warning
select realtime.send('{"n": 4}'::jsonb, 'INSERT', 'user:b0b00000-0000-4000-8000-000000000002', true);
set local client_min_messages = warning;
select tests.clear_authentication();
select is((select count(*)::int from realtime.messages where payload ->> 'n' = '4'), 0,
  'a user cannot inject a message into another user''s topic through realtime.send');
select is(tests.broadcasts('access-bob@utter.test'), 1, 'bob''s topic holds only the message meant for him');

select * from finish();
rollback;
