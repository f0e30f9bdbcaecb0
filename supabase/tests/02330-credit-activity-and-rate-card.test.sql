-- Credit activity (public.credit_activity: each grant, charge and refund of the caller's
-- with its reason, task, amount and the balance it left) and the rate card
-- (public.rate_card, readable by everyone), from which the triggers charge.
--   alice a11ce000-...-000000000001: ready voice ...a001
--   bob   b0b00000-...-000000000002
begin;
select plan(24);

select tests.create_user('activity-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('activity-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('activity-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');

-- Rate card -----------------------------------------------------------------------------------
select tests.authenticate_as_anon();
select results_eq($$ select task_type, credits, per_characters from public.rate_card order by task_type $$,
  $$ values ('clone', 0, null::integer), ('design_preview', 1, null), ('generate', 1, 500) $$,
  'anon reads the rate card: clone free, a preview 1, a generation 1 per started 500 characters');
select tests.authenticate_as('activity-bob@utter.test');
select is((select count(*)::int from public.rate_card), 3, 'a user reads the rate card');
select throws_ok($$ update public.rate_card set credits = 0 $$,
  '42501', 'permission denied for table rate_card', 'a user cannot change a price');
select throws_ok($$ insert into public.rate_card values ('x', 0, null, 'x') $$,
  '42501', 'permission denied for table rate_card', 'a user cannot add a price');
select throws_ok($$ delete from public.rate_card $$,
  '42501', 'permission denied for table rate_card', 'a user cannot delete a price');

-- Activity as the owner --------------------------------------------------------------------------
select tests.authenticate_as('activity-alice@utter.test');
insert into public.generations (id, voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000a002', 'a11ce000-0000-4000-8000-00000000a001', repeat('w', 501), 'English');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a003', 'A calm narrator', 'Hello.', 'English');
update public.tasks set cancel_requested_at = now() where design_preview_id = 'a11ce000-0000-4000-8000-00000000a003';
select results_eq(
  $$ select reason, amount, balance_after, task_type from public.credit_activity order by created_at, id $$,
  $$ values ('signup_grant', 100, 100, null::text), ('charge', -2, 98, 'generate'),
            ('charge', -1, 97, 'design_preview'), ('refund', 1, 98, 'design_preview') $$,
  'the owner reads each grant, charge and refund with its amount, the balance after and the kind of work');
select is((select task_id from public.credit_activity where reason = 'charge' and task_type = 'generate'),
  (select id from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a002'),
  'a charge names its task');
select is((select balance_after from public.credit_activity order by created_at desc, id desc limit 1),
  (select credits from public.profiles), 'the latest balance_after is the balance');
select set_eq($$ select column_name::text from information_schema.columns where table_name = 'credit_activity' $$,
  array['id', 'created_at', 'reason', 'amount', 'balance_after', 'task_id', 'task_type'],
  'an activity row has exactly id, created_at, reason, amount, balance_after, task_id and task_type');
select throws_ok($$ insert into public.credit_activity (reason, amount) values ('signup_grant', 1000) $$,
  '55000', 'cannot insert into view "credit_activity"', 'a user cannot add activity (a read-only view)');
select throws_ok($$ update public.credit_activity set amount = 1000 $$,
  '55000', 'cannot update view "credit_activity"', 'a user cannot change activity');
select throws_ok($$ delete from public.credit_activity $$,
  '55000', 'cannot delete from view "credit_activity"', 'a user cannot delete activity');

-- Another user, anon --------------------------------------------------------------------------------
select tests.authenticate_as('activity-bob@utter.test');
select results_eq($$ select reason, amount, balance_after from public.credit_activity $$,
  $$ values ('signup_grant', 100, 100) $$, 'another user reads only their own activity');
select is_empty($$ select 1 from public.credit_activity
                  where task_id = (select t.id from public.tasks t limit 0) or amount = -2 $$,
  'and nothing of alice''s, whatever the filter');
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.credit_activity $$,
  '42501', 'permission denied for view credit_activity', 'anon cannot read credit activity');
select tests.authenticate_as('activity-alice@utter.test');
select throws_ok($$ select * from private.credit_ledger $$,
  '42501', 'permission denied for schema private', 'the ledger itself stays out of reach');

-- Prices live in the rate card -----------------------------------------------------------------------
select tests.clear_authentication();
update public.rate_card set credits = 3 where task_type = 'design_preview';
update public.rate_card set per_characters = 1000 where task_type = 'generate';
select tests.authenticate_as('activity-alice@utter.test');
insert into public.design_previews (instruct, text, language) values ('A bright voice', 'Hi.', 'English');
select is((select amount from public.credit_activity order by created_at desc, id desc limit 1), -3,
  'a new preview price is charged at once');
select is((select cost from public.tasks where type = 'design_preview' and status = 'pending'), 3,
  'and recorded as the task''s cost');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Over the tier.', 'English') $$,
  'PT429', 'too many jobs at once: 2 generations or design previews are queued or running (limit 2 on the free tier)',
  'two jobs are running');
update public.tasks set cancel_requested_at = now() where status = 'pending';
insert into public.generations (voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000a001', repeat('w', 1000), 'English');
select is((select amount from public.credit_activity order by created_at desc, id desc limit 1), -1,
  'a generation is charged per the rate card''s block of characters (1000 characters now cost 1)');
select is((select count(*)::int from public.credit_activity where reason = 'refund'), 3,
  'each cancelled job was refunded once');
select tests.clear_authentication();
select set_config('test.broadcast', (
  select payload -> 'record' from realtime.messages
  where topic = 'user:a11ce000-0000-4000-8000-000000000001' and payload ->> 'table' = 'credit_activity'
  order by (payload #>> '{record,id}')::bigint desc limit 1)::text, true);
select tests.authenticate_as('activity-alice@utter.test');
select is((select to_jsonb(a) from public.credit_activity a where a.id = (current_setting('test.broadcast')::jsonb ->> 'id')::bigint),
  current_setting('test.broadcast')::jsonb,
  'each charge is broadcast to the owner as the very row credit_activity shows');
select tests.clear_authentication();
select ok(tests.credits_match_ledger(), 'every balance is still its ledger''s sum');
select ok((select bool_and(l.balance_after = (select sum(e.delta) from private.credit_ledger e
                                             where e.user_id = l.user_id and (e.created_at, e.id) <= (l.created_at, l.id)))
           from private.credit_ledger l),
  'every balance_after is the running sum of its user''s ledger');

select * from finish();
rollback;
