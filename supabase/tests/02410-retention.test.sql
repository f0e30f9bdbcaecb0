-- Retention: each prune function removes what is older than its window, keeps the
-- rest, and refuses a window that would throw away live data.
begin;
select plan(12);

-- pgmq archives ------------------------------------------------------------------
select pgmq.send('generate', '{"task_id": "old"}'::jsonb);
select pgmq.send('generate', '{"task_id": "new"}'::jsonb);
select pgmq.send('storage_cleanup', '{"bucket": "generations", "keys": []}'::jsonb);
select pgmq.archive('generate', msg_id) from pgmq.q_generate;
select pgmq.archive('storage_cleanup', msg_id) from pgmq.q_storage_cleanup;
update pgmq.a_generate set archived_at = now() - interval '15 days' where message ->> 'task_id' = 'old';
update pgmq.a_storage_cleanup set archived_at = now() - interval '30 days';

select is(private.prune_queue_archives(), 2::bigint,
  'pruning the queue archives removes the two messages archived more than 14 days ago');
select results_eq($$ select message ->> 'task_id' from pgmq.a_generate $$, $$ values ('new') $$,
  'the recently archived message stays');
select is(tests.archived('storage_cleanup'), 0, 'every queue''s archive is pruned');
select is(private.prune_queue_archives(), 0::bigint, 'pruning again removes nothing');
select is(private.prune_queue_archives(interval '1 hour'), 0::bigint,
  'a shorter window keeps what is younger than it');
update pgmq.a_generate set archived_at = now() - interval '2 hours';
select is(private.prune_queue_archives(interval '1 hour'), 1::bigint, 'and removes what is older');
select throws_ok($$ select private.prune_queue_archives(interval '1 minute') $$, '22023',
  'prune_queue_archives keeps at least an hour of archive, got 00:01:00',
  'a window under an hour is refused');

-- Broadcasts -----------------------------------------------------------------------
-- On Supabase realtime.messages is partitioned by day and the platform drops old
-- partitions, so pruning leaves it alone; on a plain table it removes old rows.
select tests.create_user('retention-alice@utter.test');
select realtime.send('{"n": 1}'::jsonb, 'INSERT', 'user:' || tests.get_user_id('retention-alice@utter.test'), true);
select realtime.send('{"n": 2}'::jsonb, 'INSERT', 'user:' || tests.get_user_id('retention-alice@utter.test'), true);
create function pg_temp.broadcast_pruning() returns setof text language plpgsql as $$
begin
  if (select c.relkind from pg_class c where c.oid = 'realtime.messages'::regclass) = 'p' then
    return next is(private.prune_broadcasts(), 0::bigint,
      'a partitioned realtime.messages (Supabase) is left to the platform, which drops old partitions');
    return next is((select count(*)::integer from realtime.messages where topic like 'user:%'), 2,
      'and every broadcast stays');
  else
    update realtime.messages set inserted_at = inserted_at - interval '4 days' where payload ->> 'n' = '1';
    return next is(private.prune_broadcasts(), 1::bigint,
      'pruning broadcasts removes those older than three days on an unpartitioned realtime.messages');
    return next results_eq($q$ select (payload ->> 'n')::integer from realtime.messages where topic like 'user:%' $q$,
      $q$ values (2) $q$, 'the recent broadcast stays');
  end if;
end
$$;
select * from pg_temp.broadcast_pruning();
select throws_ok($$ select private.prune_broadcasts(interval '1 second') $$, '22023',
  'prune_broadcasts keeps at least a minute of broadcasts, got 00:00:01',
  'a window under a minute is refused');

-- Who may run them ------------------------------------------------------------------
select tests.authenticate_as('retention-alice@utter.test');
select throws_ok($$ select private.prune_broadcasts() $$, '42501', null, 'a user cannot prune');
select tests.clear_authentication();
select is(tests.outcome_as('utter_worker', 'select private.prune_queue_archives()'),
  '42501: permission denied for schema private', 'nor can the listener''s role');

select * from finish();
rollback;
