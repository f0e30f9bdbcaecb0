-- The voice library: an owner renames and favourites their voices (those two columns
-- and nothing else), sorts them by use (generation_count, last_used_at, kept by a
-- trigger on each generation) and searches them by name.
--   alice a11ce000-...-000000000001: ready voices ...a001 'Narrator', ...a002 'Announcer'
--   bob   b0b00000-...-000000000002: ready voice ...b001
begin;
select plan(29);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('library-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('library-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('library-alice@utter.test', 'Narrator', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('library-alice@utter.test', 'Announcer', 'a11ce000-0000-4000-8000-00000000a002');
select tests.make_ready_voice('library-bob@utter.test', 'Bob voice', 'b0b00000-0000-4000-8000-00000000b001');

-- Rename ------------------------------------------------------------------------------
select tests.authenticate_as('library-alice@utter.test');
select results_eq(
  $$ update public.voices set name = '  Storyteller  ' where id = 'a11ce000-0000-4000-8000-00000000a001' returning name $$,
  $$ values ('Storyteller') $$,
  'the owner renames a voice; the name is trimmed');
select throws_ok($$ update public.voices set name = E' \u200b ' where id = 'a11ce000-0000-4000-8000-00000000a001' $$,
  '22023', 'name must not be empty', 'a blank new name (spaces and a zero-width space) is refused');
select throws_ok(format($$ update public.voices set name = %L where id = 'a11ce000-0000-4000-8000-00000000a001' $$, repeat('n', 101)),
  '22023', 'name is 101 characters long; the limit is 100', 'a new name over 100 characters is refused');
select is((select name from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'), 'Storyteller',
  'refused renames leave the name as it was');

-- Favourite --------------------------------------------------------------------------------
select results_eq(
  $$ update public.voices set is_favorite = true where id = 'a11ce000-0000-4000-8000-00000000a002' returning is_favorite $$,
  $$ values (true) $$, 'the owner favourites a voice');
select results_eq(
  $$ select name from public.voices order by is_favorite desc, created_at desc $$,
  $$ values ('Announcer'), ('Storyteller') $$, 'favourites sort first');

-- Nothing else is writable (forged columns) ---------------------------------------------------
select throws_ok(format($$ update public.voices set %I = %s where id = 'a11ce000-0000-4000-8000-00000000a001' $$, col, val),
  '42501', 'permission denied for table voices', 'a client cannot update ' || col)
from (values
  ('status', $$'failed'$$), ('user_id', $$'b0b00000-0000-4000-8000-000000000002'$$),
  ('normalized_object_key', $$'x'$$), ('reference_object_key', $$'x'$$), ('generation_count', '1000'),
  ('last_used_at', 'now()'), ('source', $$'designed'$$), ('description', $$'x'$$)
) as forged(col, val);
select throws_ok($$ update public.voices set name = 'Renamed', status = 'failed' $$,
  '42501', 'permission denied for table voices', 'a forged column beside a rename refuses the whole update');

-- Another user, anon ----------------------------------------------------------------------------
select tests.authenticate_as('library-bob@utter.test');
with renamed as (
  update public.voices set name = 'Stolen', is_favorite = true
  where id = 'a11ce000-0000-4000-8000-00000000a001' returning 1
)
select is(count(*)::int, 0, 'another user''s rename or favourite affects no row') from renamed;
select tests.clear_authentication();
select is((select name || '/' || is_favorite from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'),
  'Storyteller/false', 'alice''s voice is unchanged by bob');
select tests.authenticate_as_anon();
select throws_ok($$ update public.voices set name = 'Anon' $$,
  '42501', 'permission denied for table voices', 'anon cannot rename voices');

-- Sorting by use ---------------------------------------------------------------------------------
select tests.authenticate_as('library-alice@utter.test');
select is((select generation_count || '/' || (last_used_at is null) from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'),
  '0/true', 'an unused voice has no uses and no last use');
insert into public.generations (voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a002', 'One.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a002', 'Two.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a001', 'Three.', 'English');
select results_eq(
  $$ select name, generation_count from public.voices order by generation_count desc, id $$,
  $$ values ('Announcer', 2), ('Storyteller', 1) $$,
  'each generation counts as a use of its voice; voices sort by how often they were used');
select ok((select last_used_at = now() from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'),
  'last_used_at is the time of the latest generation');
select results_eq(
  $$ insert into public.generations (regenerated_from)
     select id from public.generations where text = 'Three.' returning voice_id $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a001'::uuid) $$, 'a regeneration is a use too');
select is((select generation_count from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'), 2,
  'the regenerated voice counts two uses');
delete from public.generations where text = 'One.';
select is((select generation_count from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'), 2,
  'deleting a generation does not undo its use');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('b0b00000-0000-4000-8000-00000000b001', 'Not mine.', 'English') $$,
  '22023', 'voice b0b00000-0000-4000-8000-00000000b001 not found', 'nobody can use another user''s voice');
select tests.clear_authentication();
select is((select generation_count from public.voices where id = 'b0b00000-0000-4000-8000-00000000b001'), 0,
  'so another user''s counts never move');

-- Search by name ----------------------------------------------------------------------------------
select tests.authenticate_as('library-alice@utter.test');
select results_eq($$ select name from public.voices where name ilike '%TELL%' $$,
  $$ values ('Storyteller') $$, 'a case-insensitive search finds a voice by part of its name');
select is_empty($$ select 1 from public.voices where name ilike '%Bob%' $$,
  'a search never finds another user''s voice');
select tests.clear_authentication();
select ok(
  (select indexdef like '%gin_trgm_ops%' from pg_indexes where indexname = 'voices_name_trigram'),
  'the name search has a trigram index');

select * from finish();
rollback;
