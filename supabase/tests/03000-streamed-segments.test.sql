-- Streamed audio: worker.record_segment announces a finished chunk of a generation the
-- caller holds, refuses what is not that segment with 22023, and every segment object
-- is removed when its generation's task ends (completed, failed or cancelled), when the
-- generation is deleted, and when it lands after the task ended. Only the owner reads
-- the announcements and the objects, and only while the generation is in flight.
--   alice a11ce000-...-000000003001, bob b0b00000-...-000000003002
--   generations (alice's): ...a1 running, ...a2 cancelled, ...a3 deleted, ...a4 queued,
--   ...a5 completed, ...a6 failed
begin;
select plan(51);

select tests.allow_concurrent_jobs(10);
select tests.create_user('seg-alice@utter.test', 'a11ce000-0000-4000-8000-000000003001');
select tests.create_user('seg-bob@utter.test', 'b0b00000-0000-4000-8000-000000003002');
select tests.make_ready_voice('seg-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-0000000030f0');
select tests.make_completed_preview('seg-alice@utter.test', 'a11ce000-0000-4000-8000-0000000030e0');

select tests.authenticate_as('seg-alice@utter.test');
insert into generations (id, voice_id, text, language)
select ('a11ce000-0000-4000-8000-0000000030a' || n)::uuid, 'a11ce000-0000-4000-8000-0000000030f0',
       'First sentence. Second sentence.', 'English'
from generate_series(1, 6) n;
select tests.clear_authentication();
insert into design_previews (id, user_id, instruct, text, language) values
  ('a11ce000-0000-4000-8000-0000000030e1', 'a11ce000-0000-4000-8000-000000003001', 'Calm', 'Hi.', 'English');

select tests.claim(tests.task_for(('a11ce000-0000-4000-8000-0000000030a' || n)::uuid), 'listener-a')
from generate_series(1, 6) n where n <> 4;
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-0000000030e1'), 'listener-a');

-- The key of segment n of generation ...a<g>, and the listener's call, as a statement.
create function pg_temp.key(g integer, n integer) returns text language sql as $$
  select 'a11ce000-0000-4000-8000-000000003001/a11ce000-0000-4000-8000-0000000030a' || g
         || '/segments/' || n || '.wav'
$$;
create function pg_temp.record(g integer, n integer, worker text default 'listener-a',
                               count integer default 2, seconds text default '1.5',
                               object_key text default null) returns text language sql as $$
  select format('select worker.record_segment(%L, %L, %s, %s, %L, %s)',
                tests.task_for(('a11ce000-0000-4000-8000-0000000030a' || g)::uuid), worker, n, count,
                coalesce(object_key, pg_temp.key(g, n)), seconds)
$$;
create function pg_temp.outcome(sql text) returns text language plpgsql as $$
declare
  answer text;
begin
  perform set_config('role', 'utter_worker', true);
  execute sql into answer;
  perform set_config('role', 'none', true);
  return answer;
end
$$;
-- The Storage API storing an object (the listener's upload).
create function pg_temp.store(object_key text) returns void language sql as $$
  insert into storage.objects (bucket_id, name, owner_id) values ('generations', object_key, null)
  on conflict (bucket_id, name) do update set metadata = '{"size": 2}'
$$;
create function pg_temp.cleanups(object_key text) returns integer language sql as $$
  select count(*)::integer from pgmq.q_storage_cleanup where message -> 'keys' ? object_key
$$;
create function pg_temp.segments(g integer) returns integer language sql as $$
  select count(*)::integer from public.generation_segments
  where generation_id = ('a11ce000-0000-4000-8000-0000000030a' || g)::uuid
$$;

-- Who may call it ---------------------------------------------------------------------
select tests.authenticate_as('seg-alice@utter.test');
select throws_ok(pg_temp.record(1, 0), '42501', null, 'a user cannot record a segment');
select tests.authenticate_as_anon();
select throws_ok(pg_temp.record(1, 0), '42501', null, 'nor can anon');
select tests.authenticate_as_service_role();
select throws_ok(pg_temp.record(1, 0), '42501', null, 'nor the service role');
select tests.clear_authentication();

-- Bad input ---------------------------------------------------------------------------
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, worker => '')),
  '22023: record_segment needs a worker_id', 'an empty worker id is refused');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, count => 0)),
  '22023: record_segment needs a segment_count from 1 to 1000, got 0', 'a count of 0 is refused');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, count => 1001)),
  '22023: record_segment needs a segment_count from 1 to 1000, got 1001', 'so is a count over 1000');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, -1)),
  '22023: record_segment needs a segment_index from 0 to 1, got -1', 'a negative index is refused');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 2)),
  '22023: record_segment needs a segment_index from 0 to 1, got 2', 'so is an index past the count');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, seconds => '0')),
  '22023: record_segment needs a duration_seconds in (0, 600], got 0', 'a zero duration is refused');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, seconds => '601')),
  '22023: record_segment needs a duration_seconds in (0, 600], got 601', 'so is one over 10 minutes');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, seconds => '''NaN''')),
  '22023: duration_seconds must be a finite number, got NaN', 'and NaN');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, seconds => 'null')),
  '22023: record_segment needs a duration_seconds in (0, 600], got null', 'and none at all');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, object_key => pg_temp.key(5, 0))),
  format('22023: record_segment: segment 0 of task %s belongs at %s, got %s',
         tests.task_for('a11ce000-0000-4000-8000-0000000030a1'), pg_temp.key(1, 0), pg_temp.key(5, 0)),
  'a key in another generation''s folder is refused');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, object_key =>
    'b0b00000-0000-4000-8000-000000003002/a11ce000-0000-4000-8000-0000000030a1/segments/0.wav')),
  format('22023: record_segment: segment 0 of task %s belongs at %s, got %s',
         tests.task_for('a11ce000-0000-4000-8000-0000000030a1'), pg_temp.key(1, 0),
         'b0b00000-0000-4000-8000-000000003002/a11ce000-0000-4000-8000-0000000030a1/segments/0.wav'),
  'so is one under another user''s folder');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 0, object_key =>
    'a11ce000-0000-4000-8000-000000003001/a11ce000-0000-4000-8000-0000000030a1.wav')),
  format('22023: record_segment: segment 0 of task %s belongs at %s, got %s',
         tests.task_for('a11ce000-0000-4000-8000-0000000030a1'), pg_temp.key(1, 0),
         'a11ce000-0000-4000-8000-000000003001/a11ce000-0000-4000-8000-0000000030a1.wav'),
  'and the generation''s final file');
select is(tests.outcome_as('utter_worker', pg_temp.record(1, 1, object_key => pg_temp.key(1, 0))),
  format('22023: record_segment: segment 1 of task %s belongs at %s, got %s',
         tests.task_for('a11ce000-0000-4000-8000-0000000030a1'), pg_temp.key(1, 1), pg_temp.key(1, 0)),
  'and another segment''s key');
select is(tests.outcome_as('utter_worker', format(
    'select worker.record_segment(%L, %L, 0, 1, %L, 1.0)',
    tests.task_for('a11ce000-0000-4000-8000-0000000030e1'), 'listener-a',
    'a11ce000-0000-4000-8000-000000003001/previews/a11ce000-0000-4000-8000-0000000030e1/segments/0.wav')),
  format('22023: record_segment: task %s is a design_preview task; only generations stream segments',
         tests.task_for('a11ce000-0000-4000-8000-0000000030e1')),
  'a task that is not a generation is refused');
select is(pg_temp.segments(1), 0, 'none of them recorded anything');

-- Who holds the task ------------------------------------------------------------------
select pg_temp.store(pg_temp.key(1, 0));
select is(pg_temp.outcome(pg_temp.record(1, 0, worker => 'listener-b')), 'claimed_elsewhere',
  'a listener that does not hold the task records nothing');
select is(pg_temp.outcome(pg_temp.record(4, 0)), 'not_running', 'nor does one for a queued task');
select is(pg_temp.outcome(format('select worker.record_segment(%L, %L, 0, 1, %L, 1.0)',
    'a11ce000-0000-4000-8000-00000000ffff', 'listener-a', pg_temp.key(1, 0))), 'missing',
  'a task that does not exist is missing');
select is(pg_temp.segments(1), 0, 'no announcement so far');
create temporary table before_first as
  select count(*)::integer n from realtime.messages where topic = 'user:a11ce000-0000-4000-8000-000000003001';

select is(pg_temp.outcome(pg_temp.record(1, 0)), 'recorded', 'the holder records segment 0');
select is((select payload - 'id' from realtime.messages
           where topic = 'user:a11ce000-0000-4000-8000-000000003001' and event = 'INSERT'
             and payload ->> 'table' = 'generation_segments'),
  jsonb_build_object('operation', 'INSERT', 'schema', 'public', 'table', 'generation_segments',
    'record', (select to_jsonb(s) - 'user_id' from public.generation_segments s
               where s.object_key = pg_temp.key(1, 0))),
  'it is broadcast once on the owner''s topic, without the owner''s id');
select is((select payload #>> '{record,object_key}' || ' ' || (payload #>> '{record,segment_index}')
                  || '/' || (payload #>> '{record,segment_count}') || ' ' || (payload #>> '{record,duration_seconds}')
           from realtime.messages
           where topic = 'user:a11ce000-0000-4000-8000-000000003001' and payload ->> 'table' = 'generation_segments'),
  pg_temp.key(1, 0) || ' 0/2 1.5', 'with its key, index, count and duration');
select is((select count(*)::integer from realtime.messages
           where topic = 'user:a11ce000-0000-4000-8000-000000003001') - (select n from before_first), 1,
  'and nothing else is sent');
select is(pg_temp.outcome(pg_temp.record(1, 0, seconds => '1.25')), 'recorded',
  'a retry that renders it again records it again');
select is((select duration_seconds from public.generation_segments where object_key = pg_temp.key(1, 0)),
  1.25::real, 'with the new duration');

-- Who reads it ------------------------------------------------------------------------
select pg_temp.store(pg_temp.key(1, 1));  -- stored, not announced yet
select tests.authenticate_as('seg-alice@utter.test');
select is((select count(*)::integer from public.generation_segments), 1, 'the owner reads the announcement');
select is((select count(*)::integer from storage.objects where name = pg_temp.key(1, 0)), 1,
  'and the announced segment''s object');
select is((select count(*)::integer from storage.objects where name = pg_temp.key(1, 1)), 0,
  'not a segment stored but not announced');
select throws_ok($$ insert into generation_segments
    (generation_id, segment_index, user_id, task_id, segment_count, object_key, duration_seconds)
  values ('a11ce000-0000-4000-8000-0000000030a1', 1, 'a11ce000-0000-4000-8000-000000003001',
          tests.task_for('a11ce000-0000-4000-8000-0000000030a1'), 2,
          'a11ce000-0000-4000-8000-000000003001/a11ce000-0000-4000-8000-0000000030a1/segments/1.wav', 1) $$,
  '42501', null, 'a user cannot announce a segment');
select throws_ok($$ update generation_segments set duration_seconds = 9 $$, '42501', null,
  'nor change one');
select tests.authenticate_as('seg-bob@utter.test');
select is_empty($$ select 1 from generation_segments $$, 'another user sees no announcement');
select is_empty(format('select 1 from storage.objects where name = %L', pg_temp.key(1, 0)),
  'nor the segment''s object');
select tests.authenticate_as_anon();
select throws_ok($$ select 1 from generation_segments $$, '42501', null, 'anon cannot read announcements');
select is_empty(format('select 1 from storage.objects where name = %L', pg_temp.key(1, 0)),
  'nor segment objects');
select tests.clear_authentication();

-- Removal -----------------------------------------------------------------------------
delete from pgmq.q_storage_cleanup;
select pg_temp.store(pg_temp.key(2, 0));
select is(pg_temp.outcome(pg_temp.record(2, 0)), 'recorded', 'a segment of ...a2 is announced');
select pg_temp.store(pg_temp.key(2, 1));  -- the listener dies before announcing segment 1
select tests.authenticate_as('seg-alice@utter.test');
update tasks set cancel_requested_at = now() where id = tests.task_for('a11ce000-0000-4000-8000-0000000030a2');
select tests.clear_authentication();
select is(pg_temp.cleanups(pg_temp.key(2, 0)) + pg_temp.cleanups(pg_temp.key(2, 1)), 2,
  'a cancel removes the announced segment and the one stored without an announcement');
select is(pg_temp.segments(2), 0, 'and its announcements');
select is(pg_temp.outcome(pg_temp.record(2, 1)), 'cancelled',
  'a segment announced after the cancel is refused');
select is(pg_temp.cleanups(pg_temp.key(2, 1)), 2, 'and its removal queued again');
delete from pgmq.q_storage_cleanup;
select pg_temp.store(pg_temp.key(2, 1));
select is(pg_temp.cleanups(pg_temp.key(2, 1)), 1,
  'a segment that lands after the cancel (a lapsed listener) is queued for removal as it lands');
select pg_temp.store(pg_temp.key(1, 1));
select is(pg_temp.cleanups(pg_temp.key(1, 1)), 0, 'one of a running generation is not');

select pg_temp.store(pg_temp.key(5, 0));
select pg_temp.outcome(pg_temp.record(5, 0));
select pg_temp.store(pg_temp.key(5, 1));
select pg_temp.outcome(pg_temp.record(5, 1));
select is(tests.complete(tests.task_for('a11ce000-0000-4000-8000-0000000030a5'), 'listener-a'), 'completed',
  '...a5 completes with its final file');
select is(pg_temp.cleanups(pg_temp.key(5, 0)) + pg_temp.cleanups(pg_temp.key(5, 1)), 2,
  'its segments are removed once the final file is adopted');
select is(pg_temp.segments(5), 0, 'with their announcements, so the owner reads them no longer');

select pg_temp.store(pg_temp.key(6, 0));
select pg_temp.outcome(pg_temp.record(6, 0));
select pg_temp.outcome(format('select worker.fail_task(%L, %L, %L, false, 0, 3)',
  tests.task_for('a11ce000-0000-4000-8000-0000000030a6'), 'listener-a', 'broken'));
select is(pg_temp.cleanups(pg_temp.key(6, 0)), 1, 'a failed generation''s segments are removed');

select pg_temp.store(pg_temp.key(3, 0));
select pg_temp.outcome(pg_temp.record(3, 0));
select tests.authenticate_as('seg-alice@utter.test');
delete from generations where id = 'a11ce000-0000-4000-8000-0000000030a3';
select tests.clear_authentication();
select is(pg_temp.cleanups(pg_temp.key(3, 0)), 1, 'deleting a running generation removes its segments');
select is(pg_temp.outcome(format('select worker.record_segment(%L, %L, 1, 2, %L, 1.0)',
    (select id from tasks where user_id = 'a11ce000-0000-4000-8000-000000003001' and type = 'generate'
       and generation_id is null and status = 'cancelled'),
    'listener-a', pg_temp.key(3, 1))), 'cancelled',
  'and a segment its lapsed listener announces afterwards is refused');
select is(pg_temp.cleanups(pg_temp.key(3, 1)), 1, 'and removed');

select * from finish();
rollback;
