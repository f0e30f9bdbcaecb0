-- Streamed segments when an attempt ends without its task ending (a retry, another
-- listener taking over a lapsed claim) and when the account goes while a generation
-- streams (20261128230000).
begin;
select plan(11);

select tests.allow_concurrent_jobs(10);
select tests.create_user('segf-carol@utter.test', 'c0c00000-0000-4000-8000-000000003501');
select tests.make_ready_voice('segf-carol@utter.test', 'Carol', 'c0c00000-0000-4000-8000-0000000035f0');
select tests.authenticate_as('segf-carol@utter.test');
insert into generations (id, voice_id, text, language) values
  ('c0c00000-0000-4000-8000-0000000035a1', 'c0c00000-0000-4000-8000-0000000035f0', 'One. Two.', 'English'),
  ('c0c00000-0000-4000-8000-0000000035a2', 'c0c00000-0000-4000-8000-0000000035f0', 'One. Two.', 'English'),
  ('c0c00000-0000-4000-8000-0000000035a3', 'c0c00000-0000-4000-8000-0000000035f0', 'One. Two.', 'English');
select tests.clear_authentication();
select tests.claim(tests.task_for('c0c00000-0000-4000-8000-0000000035a1'), 'listener-a');
select tests.claim(tests.task_for('c0c00000-0000-4000-8000-0000000035a2'), 'listener-a');
select tests.claim(tests.task_for('c0c00000-0000-4000-8000-0000000035a3'), 'listener-a');

create function pg_temp.key(g integer, n integer) returns text language sql as $$
  select 'c0c00000-0000-4000-8000-000000003501/c0c00000-0000-4000-8000-0000000035a' || g
         || '/segments/' || n || '.wav' $$;
create function pg_temp.task(g integer) returns uuid language sql as $$
  select tests.task_for(('c0c00000-0000-4000-8000-0000000035a' || g)::uuid) $$;
-- The Storage API writing a segment object (a retry writes the same key again).
create function pg_temp.store(object_key text) returns void language sql as $$
  insert into storage.objects (bucket_id, name, owner_id) values ('generations', object_key, null)
  on conflict (bucket_id, name) do update set metadata = '{"size": 2}' $$;
create function pg_temp.record(g integer, n integer, worker text default 'listener-a')
returns text language plpgsql as $$
declare answer text; task uuid := pg_temp.task(g);
begin
  perform set_config('role', 'utter_worker', true);
  select worker.record_segment(task, worker, n, 3, pg_temp.key(g, n), 1.5) into answer;
  perform set_config('role', 'none', true);
  return answer;
end $$;
create function pg_temp.announced(g integer) returns integer language sql as $$
  select count(*)::integer from generation_segments
  where generation_id = ('c0c00000-0000-4000-8000-0000000035a' || g)::uuid $$;
create function pg_temp.cleanups(object_key text) returns integer language sql as $$
  select count(*)::integer from pgmq.q_storage_cleanup where message -> 'keys' ? object_key $$;

-- A retry: the failed attempt's announcements are withdrawn with it; its objects stay
-- (the next attempt writes the same keys) and are no longer readable.
select pg_temp.store(pg_temp.key(2, 0));
select pg_temp.store(pg_temp.key(2, 1));
select pg_temp.record(2, 0);
select pg_temp.record(2, 1);
select tests.outcome_as('utter_worker', format('select worker.fail_task(%L, %L, %L, true, 0, 3)',
  pg_temp.task(2), 'listener-a', 'transient')) is not null as failed;
select is((select status::text from tasks where id = pg_temp.task(2)), 'pending',
  'the failed attempt is retried');
select is(pg_temp.announced(2), 0, 'a retried attempt''s announcements are withdrawn with it');
select is(pg_temp.cleanups(pg_temp.key(2, 0)), 0,
  'its objects are not queued for removal: the next attempt writes the same keys');
select tests.authenticate_as('segf-carol@utter.test');
select is((select count(*)::integer from storage.objects where name = pg_temp.key(2, 0)), 0,
  'the owner can no longer read a withdrawn segment');
select tests.clear_authentication();
select tests.claim(pg_temp.task(2), 'listener-b');
select pg_temp.store(pg_temp.key(2, 0));
select is(pg_temp.record(2, 0, 'listener-b'), 'recorded', 'the next attempt announces segment 0 afresh');
select is(pg_temp.announced(2), 1, 'only the next attempt''s segments are announced');

-- Another listener takes over a lapsed claim: a new attempt, the same withdrawal.
select pg_temp.store(pg_temp.key(3, 0));
select pg_temp.record(3, 0);
select is((tests.claim(pg_temp.task(3), 'listener-b')) ->> 'outcome', 'claimed',
  'another listener takes the task over');
select is(pg_temp.announced(3), 0, 'the taken-over attempt''s announcements are withdrawn');
select is(pg_temp.record(3, 1), 'claimed_elsewhere', 'the lapsed listener announces nothing more');

-- The account goes while ...a1 streams: segment 0 announced, segment 1 stored only.
delete from pgmq.q_storage_cleanup;
select pg_temp.store(pg_temp.key(1, 0));
select is(pg_temp.record(1, 0), 'recorded', 'segment 0 is announced');
select pg_temp.store(pg_temp.key(1, 1));
delete from auth.users where id = 'c0c00000-0000-4000-8000-000000003501';
select is(pg_temp.cleanups(pg_temp.key(1, 0)) + pg_temp.cleanups(pg_temp.key(1, 1)), 2,
  'deleting the account queues the removal of its streaming generation''s segments');

select * from finish();
rollback;
