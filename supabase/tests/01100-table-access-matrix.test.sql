-- Every table against every operation, as the owner, as another user, as anon and as
-- the service role. Rows of one user are invisible to another (RLS), and what the
-- client contract does not name is refused by privileges (42501).
--   alice a11ce000-...-000000000001: voice ...a001, generation ...a002, preview ...a003
--   bob   b0b00000-...-000000000002: voice ...b001, generation ...b002, preview ...b003
begin;
select plan(73);

select tests.create_user('matrix-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('matrix-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('matrix-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('matrix-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
insert into public.generations (id, user_id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a002', 'a11ce000-0000-4000-8000-000000000001',
   'a11ce000-0000-4000-8000-00000000a001', 'Alice speaks.', 'English'),
  ('b0b00000-0000-4000-8000-00000000b002', 'b0b00000-0000-4000-8000-000000000002',
   'b0b00000-0000-4000-8000-00000000b001', 'Bob speaks.', 'English');
select tests.make_completed_preview('matrix-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a003');
select tests.make_completed_preview('matrix-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b003');

-- languages: public reference data, read-only for everyone.
select tests.authenticate_as('matrix-alice@utter.test');
select is((select count(*)::int from public.languages), 11, 'a user reads all 11 languages');
select throws_ok($$ insert into public.languages values ('Klingon', 99, true) $$,
  '42501', 'permission denied for table languages', 'a user cannot add a language');
select throws_ok($$ update public.languages set allowed_for_design = true where name = 'Auto' $$,
  '42501', 'permission denied for table languages', 'a user cannot change a language');
select throws_ok($$ delete from public.languages where name = 'Italian' $$,
  '42501', 'permission denied for table languages', 'a user cannot delete a language');
select tests.authenticate_as_anon();
select is((select count(*)::int from public.languages), 11, 'anon reads all 11 languages');
select throws_ok($$ insert into public.languages values ('Klingon', 99, true) $$,
  '42501', 'permission denied for table languages', 'anon cannot add a language');

-- profiles: read your own; credits change only through the ledger.
select tests.authenticate_as('matrix-alice@utter.test');
select results_eq($$ select id from public.profiles $$,
  $$ values ('a11ce000-0000-4000-8000-000000000001'::uuid) $$,
  'a user reads exactly their own profile');
select is_empty($$ select 1 from public.profiles where id = 'b0b00000-0000-4000-8000-000000000002' $$,
  'a user cannot see another user''s profile');
select throws_ok($$ insert into public.profiles (id, credits) values (gen_random_uuid(), 1000) $$,
  '42501', 'permission denied for table profiles', 'a user cannot create a profile');
select throws_ok($$ update public.profiles set credits = 1000000 $$,
  '42501', 'permission denied for table profiles', 'a user cannot set their credits');
select throws_ok($$ delete from public.profiles $$,
  '42501', 'permission denied for table profiles', 'a user cannot delete their profile');
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.profiles $$,
  '42501', 'permission denied for table profiles', 'anon cannot read profiles');

-- tasks: read your own, and write only cancel_requested_at.
select tests.authenticate_as('matrix-alice@utter.test');
select results_eq($$ select id from public.tasks order by id $$,
  $$ select unnest(array[tests.task_for('a11ce000-0000-4000-8000-00000000a001'),
                         tests.task_for('a11ce000-0000-4000-8000-00000000a002'),
                         tests.task_for('a11ce000-0000-4000-8000-00000000a003')]) as id order by id $$,
  'a user reads exactly their own three tasks');
select is_empty($$ select 1 from public.tasks where id = tests.task_for('b0b00000-0000-4000-8000-00000000b002') $$,
  'a user cannot see another user''s task');
select throws_ok($$ insert into public.tasks (user_id, type) values (auth.uid(), 'clone') $$,
  '42501', 'permission denied for table tasks', 'a user cannot create a task');
select throws_ok($$ update public.tasks set status = 'completed' $$,
  '42501', 'permission denied for table tasks', 'a user cannot set a task''s status');
select throws_ok($$ update public.tasks set cost = 0, cancel_requested_at = now() $$,
  '42501', 'permission denied for table tasks', 'a user cannot change the cost alongside a cancel');
with cancelled as (
  update public.tasks set cancel_requested_at = now()
  where generation_id = 'a11ce000-0000-4000-8000-00000000a002' returning status
)
select is(string_agg(status, ','), 'cancelled',
  'a user can cancel their own task through cancel_requested_at') from cancelled;
with cancelled as (
  update public.tasks set cancel_requested_at = now()
  where id = tests.task_for('b0b00000-0000-4000-8000-00000000b002') returning 1
)
select is(count(*)::int, 0, 'cancelling another user''s task affects no row') from cancelled;
select throws_ok($$ delete from public.tasks $$,
  '42501', 'permission denied for table tasks', 'a user cannot delete tasks');
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.tasks $$,
  '42501', 'permission denied for table tasks', 'anon cannot read tasks');
select throws_ok($$ update public.tasks set cancel_requested_at = now() $$,
  '42501', 'permission denied for table tasks', 'anon cannot cancel tasks');

-- voices
select tests.authenticate_as('matrix-alice@utter.test');
select results_eq($$ select id from public.voices $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a001'::uuid) $$, 'a user reads exactly their own voices');
select is_empty($$ select 1 from public.voices where id = 'b0b00000-0000-4000-8000-00000000b001' $$,
  'a user cannot see another user''s voice');
select tests.upload_reference('matrix-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a011');
select lives_ok($$
  insert into public.voices (id, name, language, reference_object_key, reference_transcript)
  values ('a11ce000-0000-4000-8000-00000000a011', 'Second', 'Auto',
          'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav',
          'Ten or more characters.') $$,
  'a user can clone a voice from their upload');
select tests.upload_reference('matrix-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a012');
select lives_ok($$
  insert into public.voices (id, user_id, name, language, reference_object_key, reference_transcript)
  values ('a11ce000-0000-4000-8000-00000000a012', 'a11ce000-0000-4000-8000-000000000001', 'Third', 'German',
          'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a012/reference.wav',
          'Ten or more characters.') $$,
  'a user may send their own user_id with a voice');
select throws_ok($$
  insert into public.voices (id, user_id, name, language, reference_object_key, reference_transcript)
  values ('a11ce000-0000-4000-8000-00000000a013', 'b0b00000-0000-4000-8000-000000000002', 'Forged', 'German',
          'b0b00000-0000-4000-8000-000000000002/a11ce000-0000-4000-8000-00000000a013/reference.wav',
          'Ten or more characters.') $$,
  '22023', 'user_id must be your own user id', 'a user cannot create a voice for another user');
select throws_ok($$ update public.voices set status = 'ready' $$,
  '42501', 'permission denied for table voices', 'a user cannot update a voice''s status (only name and is_favorite, 02310)');
with deleted as (delete from public.voices where id = 'b0b00000-0000-4000-8000-00000000b001' returning 1)
select is(count(*)::int, 0, 'deleting another user''s voice affects no row') from deleted;
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.voices $$,
  '42501', 'permission denied for table voices', 'anon cannot read voices');
select throws_ok($$ insert into public.voices (name) values ('x') $$,
  '42501', 'permission denied for table voices', 'anon cannot create voices');
select throws_ok($$ delete from public.voices $$,
  '42501', 'permission denied for table voices', 'anon cannot delete voices');

-- generations
select tests.authenticate_as('matrix-alice@utter.test');
select results_eq($$ select id from public.generations $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a002'::uuid) $$, 'a user reads exactly their own generations');
select is_empty($$ select 1 from public.generations where id = 'b0b00000-0000-4000-8000-00000000b002' $$,
  'a user cannot see another user''s generation');
select lives_ok($$
  insert into public.generations (voice_id, text, language)
  values ('a11ce000-0000-4000-8000-00000000a001', 'Hello again.', 'English') $$,
  'a user can generate with their own ready voice');
select throws_ok($$
  insert into public.generations (user_id, voice_id, text, language)
  values ('b0b00000-0000-4000-8000-000000000002', 'a11ce000-0000-4000-8000-00000000a001', 'Hi.', 'English') $$,
  '22023', 'user_id must be your own user id', 'a user cannot create a generation for another user');
select throws_ok($$ update public.generations set text = 'changed' $$,
  '42501', 'permission denied for table generations', 'a user cannot update generations');
with deleted as (delete from public.generations where id = 'b0b00000-0000-4000-8000-00000000b002' returning 1)
select is(count(*)::int, 0, 'deleting another user''s generation affects no row') from deleted;
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.generations $$,
  '42501', 'permission denied for table generations', 'anon cannot read generations');
select throws_ok($$ insert into public.generations (text) values ('x') $$,
  '42501', 'permission denied for table generations', 'anon cannot create generations');

-- design_previews
select tests.authenticate_as('matrix-alice@utter.test');
select results_eq($$ select id from public.design_previews $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a003'::uuid) $$, 'a user reads exactly their own design previews');
select is_empty($$ select 1 from public.design_previews where id = 'b0b00000-0000-4000-8000-00000000b003' $$,
  'a user cannot see another user''s design preview');
select lives_ok($$
  insert into public.design_previews (instruct, text, language)
  values ('A bright tenor', 'Testing one two.', 'French') $$,
  'a user can request a design preview');
select throws_ok($$
  insert into public.design_previews (user_id, instruct, text, language)
  values ('b0b00000-0000-4000-8000-000000000002', 'A bright tenor', 'Testing.', 'French') $$,
  '22023', 'user_id must be your own user id', 'a user cannot create a preview for another user');
select throws_ok($$ update public.design_previews set text = 'changed' $$,
  '42501', 'permission denied for table design_previews', 'a user cannot update design previews');
with deleted as (delete from public.design_previews where id = 'b0b00000-0000-4000-8000-00000000b003' returning 1)
select is(count(*)::int, 0, 'deleting another user''s design preview affects no row') from deleted;
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.design_previews $$,
  '42501', 'permission denied for table design_previews', 'anon cannot read design previews');
select throws_ok($$ insert into public.design_previews (text) values ('x') $$,
  '42501', 'permission denied for table design_previews', 'anon cannot create design previews');

-- private.credit_ledger: not reachable by any API role.
select tests.authenticate_as('matrix-alice@utter.test');
select throws_ok($$ select * from private.credit_ledger $$,
  '42501', 'permission denied for schema private', 'a user cannot read the ledger');
select throws_ok($$ insert into private.credit_ledger (user_id, delta, reason) values (auth.uid(), 1000, 'refund') $$,
  '42501', 'permission denied for schema private', 'a user cannot credit themselves');
select throws_ok($$ update private.credit_ledger set delta = 1000 $$,
  '42501', 'permission denied for schema private', 'a user cannot rewrite the ledger');
select throws_ok($$ delete from private.credit_ledger $$,
  '42501', 'permission denied for schema private', 'a user cannot erase the ledger');
select tests.authenticate_as_anon();
select throws_ok($$ select * from private.credit_ledger $$,
  '42501', 'permission denied for schema private', 'anon cannot read the ledger');

-- The voice library, tasks' default list, credits and limits (details in 02310-02340).
select tests.authenticate_as('matrix-alice@utter.test');
with renamed as (update public.voices set name = 'Alice renamed', is_favorite = true
                 where id = 'a11ce000-0000-4000-8000-00000000a001' returning 1)
select is(count(*)::int, 1, 'a user renames and favourites their own voice') from renamed;
with renamed as (update public.voices set name = 'Mine now' where id = 'b0b00000-0000-4000-8000-00000000b001' returning 1)
select is(count(*)::int, 0, 'renaming another user''s voice affects no row') from renamed;
select is_empty($$ select 1 from public.task_list where id = tests.task_for('b0b00000-0000-4000-8000-00000000b002') $$,
  'a user''s task list holds none of another user''s tasks');
select is((select count(*)::int from public.credit_activity), tests.ledger_rows('matrix-alice@utter.test', 'signup_grant')
  + tests.ledger_rows('matrix-alice@utter.test', 'charge') + tests.ledger_rows('matrix-alice@utter.test', 'refund'),
  'a user''s credit activity is exactly their ledger');
select is((select count(*)::int from public.rate_card) || '/' || (select count(*)::int from public.tier_limits), '3/2',
  'a user reads the rate card and the tiers');
select throws_ok($$ update public.rate_card set credits = 0 $$,
  '42501', 'permission denied for table rate_card', 'a user cannot change a price');
select tests.authenticate_as_anon();
select is((select count(*)::int from public.rate_card) || '/' || (select count(*)::int from public.tier_limits), '3/2',
  'anon reads the rate card and the tiers');
select throws_ok($$ select * from public.task_list $$,
  '42501', 'permission denied for view task_list', 'anon cannot read task lists');
select throws_ok($$ select * from public.credit_activity $$,
  '42501', 'permission denied for view credit_activity', 'anon cannot read credit activity');
select throws_ok($$ update public.voices set is_favorite = true $$,
  '42501', 'permission denied for table voices', 'anon cannot favourite voices');
select tests.authenticate_as_service_role();
select is_empty($$ select 1 from public.credit_activity $$,
  'credit activity is per signed-in user: the service role, with no user, sees none');

-- The service role (server code) sees every user's rows.
select tests.authenticate_as_service_role();
select is((select count(*)::int from public.profiles
           where id in ('a11ce000-0000-4000-8000-000000000001', 'b0b00000-0000-4000-8000-000000000002')),
  2, 'service_role reads every user''s profile');
select is((select count(distinct user_id)::int from public.tasks
           where user_id in ('a11ce000-0000-4000-8000-000000000001', 'b0b00000-0000-4000-8000-000000000002')),
  2, 'service_role reads every user''s tasks');
select is((select count(*)::int from public.voices
           where id in ('a11ce000-0000-4000-8000-00000000a001', 'b0b00000-0000-4000-8000-00000000b001')),
  2, 'service_role reads every user''s voices');

-- Own deletes, last: they remove what the checks above relied on.
select tests.authenticate_as('matrix-alice@utter.test');
with deleted as (delete from public.generations where id = 'a11ce000-0000-4000-8000-00000000a002' returning 1)
select is(count(*)::int, 1, 'a user can delete their own generation') from deleted;
with deleted as (delete from public.design_previews where id = 'a11ce000-0000-4000-8000-00000000a003' returning 1)
select is(count(*)::int, 1, 'a user can delete their own design preview') from deleted;
with deleted as (delete from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001' returning 1)
select is(count(*)::int, 1, 'a user can delete their own voice') from deleted;

select tests.clear_authentication();
select is(
  (select count(*)::int from public.voices where id = 'b0b00000-0000-4000-8000-00000000b001')
  + (select count(*)::int from public.generations where id = 'b0b00000-0000-4000-8000-00000000b002')
  + (select count(*)::int from public.design_previews where id = 'b0b00000-0000-4000-8000-00000000b003'),
  3, 'bob''s voice, generation and preview survived alice''s deletes');
select is((select status || '/' || coalesce(cancel_requested_at::text, 'not requested') from public.tasks
           where id = tests.task_for('b0b00000-0000-4000-8000-00000000b002')),
  'pending/not requested', 'bob''s task survived alice''s cancel');
select ok(tests.credits_match_ledger(), 'every balance still equals its ledger');

select * from finish();
rollback;
