-- Streamed segments when the audio is rendered again before the task ends (a retry,
-- a release of in-process work, a takeover that cannot re-attach) or not (a takeover
-- that re-attaches to the same engine call), and when the account goes while a
-- generation streams (20261128230000).
begin;
select plan(18);

select tests.allow_concurrent_jobs(10);
select tests.create_user('segf-carol@utter.test', 'c0c00000-0000-4000-8000-000000003501');
select tests.make_ready_voice('segf-carol@utter.test', 'Carol', 'c0c00000-0000-4000-8000-0000000035f0');
select tests.authenticate_as('segf-carol@utter.test');
insert into generations (id, voice_id, text, language)
select ('c0c00000-0000-4000-8000-0000000035a' || g)::uuid, 'c0c00000-0000-4000-8000-0000000035f0',
       'One. Two.', 'English'
from generate_series(1, 5) g;
select tests.clear_authentication();

create function pg_temp.task(g integer) returns uuid language sql as $$
  select tests.task_for(('c0c00000-0000-4000-8000-0000000035a' || g)::uuid) $$;
create function pg_temp.key(g integer, n integer) returns text language sql as $$
  select 'c0c00000-0000-4000-8000-000000003501/c0c00000-0000-4000-8000-0000000035a' || g
         || '/segments/' || n || '.wav' $$;
-- The Storage API writing a segment object (a new rendering writes the same key again).
create function pg_temp.store(object_key text) returns void language sql as $$
  insert into storage.objects (bucket_id, name, owner_id) values ('generations', object_key, null)
  on conflict (bucket_id, name) do update set metadata = '{"size": 2}' $$;
create function pg_temp.as_worker(query text) returns text language plpgsql as $$
declare answer text;
begin
  perform set_config('role', 'utter_worker', true);
  execute query into answer;
  perform set_config('role', 'none', true);
  return answer;
end $$;
create function pg_temp.record(g integer, n integer, worker text default 'listener-a')
returns text language sql as $$
  select pg_temp.store(pg_temp.key(g, n));
  select pg_temp.as_worker(format('select worker.record_segment(%L, %L, %s, 3, %L, 1.5)',
                                  pg_temp.task(g), worker, n, pg_temp.key(g, n))) $$;
create function pg_temp.engine_call(g integer, worker text, call_id text) returns text language sql as $$
  select pg_temp.as_worker(format('select worker.record_engine_call(%L, %L, %L)',
                                  pg_temp.task(g), worker, call_id)) $$;
create function pg_temp.announced(g integer) returns integer[] language sql as $$
  select coalesce(array_agg(segment_index order by segment_index), '{}') from generation_segments
  where generation_id = ('c0c00000-0000-4000-8000-0000000035a' || g)::uuid $$;
create function pg_temp.cleanups(object_key text) returns integer language sql as $$
  select count(*)::integer from pgmq.q_storage_cleanup where message -> 'keys' ? object_key $$;

select tests.claim(pg_temp.task(g), 'listener-a') from generate_series(1, 5) g;

-- A retry forgets the engine call: the next attempt renders anew, so the failed one's
-- announcements go with it; its objects stay (the same keys are written again).
select pg_temp.engine_call(2, 'listener-a', 'fc-first/ticket-1');
select pg_temp.record(2, 0), pg_temp.record(2, 1);
select pg_temp.as_worker(format('select worker.fail_task(%L, %L, %L, true, 0, 3)',
  pg_temp.task(2), 'listener-a', 'transient'));
select is((select status::text from tasks where id = pg_temp.task(2)), 'pending',
  'the failed attempt is retried');
select is(pg_temp.announced(2), '{}', 'a retried attempt''s announcements are withdrawn with it');
select is(pg_temp.cleanups(pg_temp.key(2, 0)), 0,
  'its objects are not queued for removal: the next attempt writes the same keys');
select tests.authenticate_as('segf-carol@utter.test');
select is((select count(*)::integer from storage.objects where name = pg_temp.key(2, 0)), 0,
  'the owner can no longer read a withdrawn segment');
select tests.clear_authentication();
select tests.claim(pg_temp.task(2), 'listener-b');
select pg_temp.engine_call(2, 'listener-b', 'fc-second/ticket-2');
select is(pg_temp.record(2, 0, 'listener-b'), 'recorded', 'the next attempt announces segment 0');
select is(pg_temp.announced(2), '{0}', 'only the next attempt''s segments are announced');

-- A takeover that re-attaches to the same engine call continues the same rendering.
select pg_temp.engine_call(3, 'listener-a', 'fc-third/ticket-3');
select pg_temp.record(3, 0);
select is((tests.claim(pg_temp.task(3), 'listener-b')) ->> 'outcome', 'claimed',
  'another listener takes a lapsed claim over');
select is(pg_temp.announced(3), '{0}', 're-attached to the same call, the announcements stay');
select is(pg_temp.record(3, 1, 'listener-b'), 'recorded', 'and it announces the rest');
select is(pg_temp.announced(3), '{0,1}', 'both from the one rendering');
select is(pg_temp.record(3, 2), 'claimed_elsewhere', 'the lapsed listener announces nothing more');

-- A takeover of in-process work (no engine call) renders again: the first new segment
-- withdraws the old ones, and arrives as an INSERT.
select pg_temp.record(4, 0), pg_temp.record(4, 1);
select tests.claim(pg_temp.task(4), 'listener-b');
select is(pg_temp.announced(4), '{0,1}', 'nothing is withdrawn before the new rendering speaks');
select is(pg_temp.record(4, 0, 'listener-b'), 'recorded', 'the new rendering announces segment 0');
select is(pg_temp.announced(4), '{0}', 'the old rendering''s segments are withdrawn');
select is((select array_agg(payload ->> 'operation' order by id) from realtime.messages
           where payload ->> 'table' = 'generation_segments'
             and payload #>> '{record,object_key}' = pg_temp.key(4, 0)),
  '{INSERT,INSERT}', 'each rendering''s segment 0 reaches the owner as an INSERT');

-- A release of in-process work: rendered again for certain, withdrawn at once.
select pg_temp.record(5, 0);
select pg_temp.as_worker(format('select worker.release_task(%L, %L)', pg_temp.task(5), 'listener-a'));
select is(pg_temp.announced(5), '{}', 'released in-process work withdraws its announcements');

-- The account goes while ...a1 streams: segment 0 announced, segment 1 stored only.
delete from pgmq.q_storage_cleanup;
select is(pg_temp.record(1, 0), 'recorded', 'segment 0 is announced');
select pg_temp.store(pg_temp.key(1, 1));
delete from auth.users where id = 'c0c00000-0000-4000-8000-000000003501';
select is(pg_temp.cleanups(pg_temp.key(1, 0)) + pg_temp.cleanups(pg_temp.key(1, 1)), 2,
  'deleting the account queues the removal of its streaming generation''s segments');

select * from finish();
rollback;
