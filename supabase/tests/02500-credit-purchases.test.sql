-- Buying credits: a user inserts a purchase naming a pack and nothing else; the insert
-- queues one checkout message; the listener records the Checkout Session; only
-- billing.apply_stripe_event (role utter_billing) credits, once per purchase.
begin;
select plan(82);

-- The webhook receiver's role must be reachable with `set role` by the test runner.
grant utter_billing to postgres;

select tests.create_user('buy-alice@utter.test', 'a11ce000-0000-4000-8000-0000000b0001');
select tests.create_user('buy-bob@utter.test', 'b0b00000-0000-4000-8000-0000000b0002');

select ok((select relrowsecurity from pg_class where oid = 'public.credit_packs'::regclass), 'RLS is enabled on credit_packs');
select ok((select relrowsecurity from pg_class where oid = 'public.purchases'::regclass), 'RLS is enabled on purchases');
select ok((select relrowsecurity from pg_class where oid = 'private.stripe_events'::regclass), 'RLS is enabled on stripe_events');
select has_table('pgmq', 'q_checkout', 'queue checkout exists');

-- Packs -------------------------------------------------------------------------------
select tests.authenticate_as_anon();
select results_eq(
  $$ select id, credits, price_cents, currency from public.credit_packs order by sort_order $$,
  $$ values ('starter', 60, 299, 'usd'), ('studio', 240, 999, 'usd') $$,
  'anyone, signed in or not, reads the packs');
select throws_ok(
  $$ insert into public.purchases (pack_id) values ('starter') $$,
  '42501', 'permission denied for table purchases', 'anon cannot buy');
select tests.clear_authentication();

-- A purchase -----------------------------------------------------------------------------
-- Stripe's event bodies, reduced to the fields the credit function reads (shapes from
-- the API reference: Event, Checkout Session, Charge, Dispute).
create function tests.session_event(event_id text, purchase uuid, payment_status text default 'paid',
                                    event_type text default 'checkout.session.completed',
                                    amount integer default null, owner uuid default null)
returns jsonb language sql stable set search_path = '' as $$
  select jsonb_build_object('id', event_id, 'object', 'event', 'type', event_type,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'cs_test_' || replace(purchase::text, '-', ''), 'object', 'checkout.session',
      'amount_total', coalesce(amount, p.price_cents), 'currency', p.currency,
      'payment_status', payment_status, 'payment_intent', 'pi_' || replace(purchase::text, '-', ''),
      'metadata', jsonb_build_object('purchase_id', purchase, 'user_id', coalesce(owner, p.user_id)))))
  from public.purchases p where p.id = purchase
$$;
create function tests.refund_event(event_id text, purchase uuid, refunded integer)
returns jsonb language sql stable set search_path = '' as $$
  select jsonb_build_object('id', event_id, 'object', 'event', 'type', 'charge.refunded',
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'ch_' || replace(purchase::text, '-', ''), 'object', 'charge', 'amount', p.price_cents,
      'amount_refunded', refunded, 'payment_intent', 'pi_' || replace(purchase::text, '-', ''))))
  from public.purchases p where p.id = purchase
$$;
create function tests.dispute_event(event_id text, purchase uuid, event_type text, status text)
returns jsonb language sql stable set search_path = '' as $$
  select jsonb_build_object('id', event_id, 'object', 'event', 'type', event_type,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'dp_' || replace(purchase::text, '-', ''), 'object', 'dispute', 'status', status,
      'amount', 999, 'payment_intent', 'pi_' || replace(purchase::text, '-', ''))))
$$;
create function tests.apply(event jsonb) returns text
language sql set search_path = '' as $$ select billing.apply_stripe_event(event) ->> 'outcome' $$;
create function tests.purchase_of(email text, nth integer default 1) returns uuid
language sql stable set search_path = '' as $$
  select p.id from public.purchases p where p.user_id = tests.get_user_id(email)
  order by p.msg_id offset nth - 1 limit 1
$$;

select tests.authenticate_as('buy-alice@utter.test');
insert into public.purchases (pack_id) values ('starter');
select results_eq(
  $$ select pack_id, credits, price_cents, currency, status, checkout_url from public.purchases $$,
  $$ values ('starter', 60, 299, 'usd', 'pending', null::text) $$,
  'the owner inserts only a pack id; the pack decides credits and price, the purchase is pending');
select throws_ok(
  $$ insert into public.purchases (pack_id, credits) values ('starter', 100000) $$,
  '42501', 'permission denied for table purchases', 'a forged credit amount is refused');
select throws_ok(
  $$ insert into public.purchases (pack_id, status) values ('starter', 'paid') $$,
  '42501', 'permission denied for table purchases', 'a forged status is refused');
select throws_ok(
  $$ insert into public.purchases (pack_id, user_id) values ('starter', 'b0b00000-0000-4000-8000-0000000b0002') $$,
  '42501', 'permission denied for table purchases', 'a purchase for someone else is refused');
select throws_ok(
  $$ insert into public.purchases (pack_id) values ('platinum') $$,
  '22023', 'unknown credit pack ''platinum''', 'an unknown pack is refused by name');
select throws_ok(
  $$ update public.purchases set status = 'paid' $$,
  '42501', 'permission denied for table purchases', 'the owner cannot mark a purchase paid');
select throws_ok(
  $$ update public.purchases set credits = 100000 $$,
  '42501', 'permission denied for table purchases', 'the owner cannot change the credits');
select throws_ok(
  $$ delete from public.purchases $$,
  '42501', 'permission denied for table purchases', 'a purchase cannot be deleted');
select throws_ok(
  $$ update public.profiles set credits = 100000 $$,
  '42501', 'permission denied for table profiles', 'a user cannot write their balance');
select throws_ok(
  $$ insert into private.credit_ledger (user_id, delta, reason) values (auth.uid(), 1000, 'purchase') $$,
  '42501', 'permission denied for schema private', 'a user cannot write the ledger');
select throws_ok(
  $$ select billing.apply_stripe_event('{"id": "evt_1"}') $$,
  '42501', 'permission denied for schema billing', 'a user cannot call the credit function');
select throws_ok(
  $$ select worker.record_checkout(gen_random_uuid(), 'cs_x', 'https://x', null) $$,
  '42501', 'permission denied for schema worker', 'a user cannot record a checkout');
select tests.clear_authentication();

select is(tests.queued('checkout'), 1, 'the purchase queued one checkout message');
select is((select q.message from pgmq.q_checkout q),
  jsonb_build_object('purchase_id', tests.purchase_of('buy-alice@utter.test')),
  'the message is exactly {purchase_id}');
select is((select count(*)::integer from realtime.messages m
           where m.topic = 'user:a11ce000-0000-4000-8000-0000000b0001'
             and m.payload ->> 'table' = 'purchases' and m.payload ->> 'operation' = 'INSERT'
             and not m.payload -> 'record' ?| array['user_id', 'msg_id', 'attempts']), 1,
  'the insert is broadcast to the owner''s topic, without the queue bookkeeping');

select tests.authenticate_as('buy-bob@utter.test');
select is_empty($$ select 1 from public.purchases $$, 'another user sees none of alice''s purchases');
insert into public.purchases (pack_id) select 'studio' from generate_series(1, 5);
select throws_ok(
  $$ insert into public.purchases (pack_id) values ('studio') $$,
  'PT429', 'too many purchases waiting for their checkout: 5 (limit 5)',
  'a sixth purchase waiting for its checkout is refused');
select tests.clear_authentication();

-- The listener's side ----------------------------------------------------------------------
select is(tests.outcome_as('utter_worker', $$ select billing.apply_stripe_event('{}') $$),
  '42501: permission denied for schema billing', 'the listener cannot credit');
create temporary table claims on commit drop as
  select * from worker.claim_checkouts(30, 10, 3) order by msg_id;
select is((select count(*)::integer from claims where claim ->> 'outcome' = 'claimed'), 6,
  'claim_checkouts claims every waiting purchase');
select is((select claim -> 'job' from claims order by msg_id limit 1),
  jsonb_build_object('purchase_id', tests.purchase_of('buy-alice@utter.test'),
                     'user_id', 'a11ce000-0000-4000-8000-0000000b0001', 'attempt', 1,
                     'pack_id', 'starter', 'pack_name', 'Starter', 'credits', 60,
                     'price_cents', 299, 'currency', 'usd'),
  'a claimed job carries the purchase, its owner and the pack');
select is(worker.record_checkout(tests.purchase_of('buy-alice@utter.test'),
            'cs_test_' || replace(tests.purchase_of('buy-alice@utter.test')::text, '-', ''),
            'https://checkout.stripe.com/c/pay/cs_test_a', now() + interval '1 day'),
  'recorded', 'record_checkout writes the session back');
select is(worker.record_checkout(tests.purchase_of('buy-alice@utter.test'),
            'cs_test_' || replace(tests.purchase_of('buy-alice@utter.test')::text, '-', ''),
            'https://checkout.stripe.com/c/pay/cs_test_a', now() + interval '1 day'),
  'already_recorded', 'recording the same session again changes nothing');
select results_eq(
  $$ select status, checkout_url from public.purchases where id = tests.purchase_of('buy-alice@utter.test') $$,
  $$ values ('open', 'https://checkout.stripe.com/c/pay/cs_test_a') $$,
  'the purchase is open with its checkout URL');
select is(tests.archived('checkout'), 1, 'its message was archived');
select throws_ok(
  $$ select worker.record_checkout(tests.purchase_of('buy-bob@utter.test'), 'cs_x', 'javascript:alert(1)', null) $$,
  '22023', 'record_checkout needs an http(s) checkout URL, got ''javascript:alert(1)''',
  'record_checkout refuses a URL that is not http(s)');
select is(worker.fail_checkout(tests.purchase_of('buy-bob@utter.test'), 'Stripe API unreachable', true, 0, 3),
  'retrying', 'a retryable failure with attempts left goes back to the queue');
select is(worker.fail_checkout(tests.purchase_of('buy-bob@utter.test', 2), 'No such price', false, 0, 3),
  'failed', 'a permanent failure fails the purchase');
select results_eq(
  $$ select status, error from public.purchases where id = tests.purchase_of('buy-bob@utter.test', 2) $$,
  $$ values ('failed', 'No such price') $$, 'the failed purchase says why');

-- Stripe's webhook ----------------------------------------------------------------------
select ok((select not rolsuper and not rolbypassrls and rolcanlogin from pg_roles where rolname = 'utter_billing'),
  'utter_billing is a plain login that does not bypass RLS');
select is_empty(
  $$ select p.oid::regprocedure::text from pg_proc p
     where has_function_privilege('utter_billing', p.oid, 'execute')
       and p.pronamespace in ('billing'::regnamespace, 'worker'::regnamespace, 'private'::regnamespace)
       and p.oid <> 'billing.apply_stripe_event(jsonb)'::regprocedure $$,
  'utter_billing may execute nothing of ours but billing.apply_stripe_event');
select is(tests.outcome_as('utter_billing', 'select 1 from public.purchases'),
  '42501: permission denied for table purchases', 'utter_billing cannot read purchases');
select is(tests.outcome_as('utter_billing', 'update public.profiles set credits = 1'),
  '42501: permission denied for table profiles', 'utter_billing cannot write balances');

select is(tests.outcome_as('utter_billing', format('select billing.apply_stripe_event(%L)',
            tests.session_event('evt_alice_paid', tests.purchase_of('buy-alice@utter.test'))::text)),
  'ok', 'utter_billing applies a paid checkout session');
select is(tests.credits('buy-alice@utter.test'), 160, 'the pack''s 60 credits were added');
select is((select tier from public.profiles p join auth.users u on u.id = p.id
            where u.email = 'buy-alice@utter.test'),
  'paid', 'and moved her account to the paid tier (4 jobs at once)');
select is(tests.apply(tests.session_event('evt_alice_paid', tests.purchase_of('buy-alice@utter.test'))),
  'duplicate', 'the same event delivered again is a duplicate');
select is(tests.apply(tests.session_event('evt_alice_paid_again', tests.purchase_of('buy-alice@utter.test'))),
  'already_credited', 'another event for the same paid session credits nothing');
select is(tests.credits('buy-alice@utter.test'), 160, 'so the purchase was credited exactly once');
select is(tests.ledger_rows('buy-alice@utter.test', 'purchase'), 1, 'with one purchase row in the ledger');

select throws_ok(
  $$ select tests.apply('{"id": "evt_x", "type": "customer.created", "data": {"object": {}}}') $$,
  '22023', 'unhandled Stripe event type ''customer.created''', 'an unhandled event type is refused');
select throws_ok(
  $$ select tests.apply('{"type": "charge.refunded"}') $$,
  '22023', 'not a Stripe event: no id of the form evt_...', 'an event without an id is refused');
select throws_ok(
  format('select tests.apply(%L)', tests.session_event('evt_forged_owner', tests.purchase_of('buy-bob@utter.test', 3),
         owner => 'a11ce000-0000-4000-8000-0000000b0001')::text),
  '22023', null, 'a session whose metadata names another owner is refused');
select throws_ok(
  format('select tests.apply(%L)', tests.session_event('evt_cheap', tests.purchase_of('buy-bob@utter.test', 3), amount => 1)::text),
  '22023', null, 'a session that charged another amount is refused');
select throws_ok(
  $$ select tests.apply(jsonb_set(tests.session_event('evt_nobody', tests.purchase_of('buy-bob@utter.test', 3)),
                                  '{data,object,metadata,purchase_id}', '"00000000-0000-4000-8000-000000000000"')) $$,
  '22023', null, 'a session that matches no purchase is refused');
select is_empty($$ select 1 from private.stripe_events where id in ('evt_x', 'evt_forged_owner', 'evt_cheap', 'evt_nobody') $$,
  'refused events leave nothing behind');

-- A payment that completes later
select is(tests.apply(tests.session_event('evt_bob_unpaid', tests.purchase_of('buy-bob@utter.test', 3), 'unpaid')),
  'awaiting_payment', 'a completed but unpaid session credits nothing yet');
select is(tests.apply(tests.session_event('evt_bob_async', tests.purchase_of('buy-bob@utter.test', 3), 'paid',
                                          'checkout.session.async_payment_succeeded')),
  'credited', 'the delayed payment credits it');

-- Refunds and disputes --------------------------------------------------------------------
select is(tests.apply(tests.refund_event('evt_alice_refund_half', tests.purchase_of('buy-alice@utter.test'), 150)),
  'reconciled', 'a partial refund is applied');
select is(tests.credits('buy-alice@utter.test'), 160 - 31, 'it takes back its share, rounded up (31 of 60)');
select is(tests.apply(tests.refund_event('evt_alice_refund_all', tests.purchase_of('buy-alice@utter.test'), 299)),
  'reconciled', 'the full refund is applied');
select is(tests.apply(tests.refund_event('evt_alice_refund_stale', tests.purchase_of('buy-alice@utter.test'), 150)),
  'reconciled', 'a stale partial refund arriving late is applied too');
select results_eq(
  $$ select status, reversed_credits, debt_credits from public.purchases where id = tests.purchase_of('buy-alice@utter.test') $$,
  $$ values ('refunded', 60, 0) $$, 'but the purchase stays fully refunded: refunds count by their total');
select is(tests.credits('buy-alice@utter.test'), 100, 'alice is back to her 100 free credits');

-- Events about a payment that arrive before its credit wait for it.
select tests.authenticate_as('buy-alice@utter.test');
insert into public.purchases (pack_id) values ('starter');
select tests.clear_authentication();
select is(tests.apply(tests.refund_event('evt_alice2_refund', tests.purchase_of('buy-alice@utter.test', 2), 299)),
  'recorded', 'a refund for a payment not yet credited is kept');
select is(tests.credits('buy-alice@utter.test'), 100, 'and changes no balance');
select is(tests.apply(tests.session_event('evt_alice2_paid', tests.purchase_of('buy-alice@utter.test', 2))),
  'credited', 'the late checkout.session.completed credits the purchase');
select results_eq(
  $$ select status, reversed_credits, (select credits from public.profiles where id = p.user_id)
     from public.purchases p where id = tests.purchase_of('buy-alice@utter.test', 2) $$,
  $$ values ('refunded', 60, 100) $$, 'and the earlier refund is applied at once: nothing gained');

-- A chargeback the balance cannot cover becomes a debt, paid from the next purchase.
select tests.set_credits('buy-bob@utter.test', 10);
select is(tests.apply(tests.dispute_event('evt_bob_dispute', tests.purchase_of('buy-bob@utter.test', 3),
                                          'charge.dispute.created', 'needs_response')),
  'reconciled', 'a dispute takes the credits back');
select results_eq(
  $$ select status, reversed_credits, debt_credits from public.purchases where id = tests.purchase_of('buy-bob@utter.test', 3) $$,
  $$ values ('disputed', 240, 230) $$, 'what the balance could not cover is recorded as debt');
select is(tests.credits('buy-bob@utter.test'), 0, 'the balance never goes below zero');
select is(tests.apply(tests.dispute_event('evt_bob_dispute', tests.purchase_of('buy-bob@utter.test', 3),
                                          'charge.dispute.created', 'needs_response')),
  'duplicate', 'a redelivered dispute takes nothing more');
select is(tests.apply(tests.session_event('evt_bob_paid_4', tests.purchase_of('buy-bob@utter.test', 4))),
  'credited', 'the next purchase is credited');
select is(tests.credits('buy-bob@utter.test'), 10, 'less the 230 credits owed');
select is(tests.ledger_rows('buy-bob@utter.test', 'debt_settlement'), 1, 'as one debt settlement in the ledger');
select is((select debt_credits from public.purchases where id = tests.purchase_of('buy-bob@utter.test', 3)), 0,
  'the debt is paid');
select is(tests.apply(tests.dispute_event('evt_bob_dispute_won', tests.purchase_of('buy-bob@utter.test', 3),
                                          'charge.dispute.closed', 'won')),
  'reconciled', 'a won dispute is applied');
select is(tests.apply(tests.dispute_event('evt_bob_dispute_created_late', tests.purchase_of('buy-bob@utter.test', 3),
                                          'charge.dispute.created', 'needs_response')),
  'reconciled', 'a created event arriving after the close is applied');
select results_eq(
  $$ select status, reversed_credits, debt_credits from public.purchases where id = tests.purchase_of('buy-bob@utter.test', 3) $$,
  $$ values ('paid', 0, 0) $$, 'but cannot reopen the won dispute');
select is(tests.credits('buy-bob@utter.test'), 250, 'winning gives back the 240 credits, the debt having been paid');

-- Inquiries move no money; a lost dispute keeps the credits taken.
select tests.create_user('buy-carol@utter.test', 'ca401000-0000-4000-8000-0000000b0003');
select tests.authenticate_as('buy-carol@utter.test');
insert into public.purchases (pack_id) values ('starter');
insert into public.purchases (pack_id) values ('starter');
select tests.clear_authentication();
select tests.apply(tests.session_event('evt_carol_paid_1', tests.purchase_of('buy-carol@utter.test', 1)));
select tests.apply(tests.session_event('evt_carol_paid_2', tests.purchase_of('buy-carol@utter.test', 2)));
select is(tests.apply(tests.dispute_event('evt_carol_inquiry', tests.purchase_of('buy-carol@utter.test', 1),
                                          'charge.dispute.created', 'warning_needs_response')),
  'reconciled', 'an inquiry is applied');
select is(tests.credits('buy-carol@utter.test'), 220, 'but takes nothing');
select is(tests.apply(tests.dispute_event('evt_carol_lost_opened', tests.purchase_of('buy-carol@utter.test', 2),
                                          'charge.dispute.created', 'needs_response')),
  'reconciled', 'a dispute is opened');
select is(tests.apply(tests.dispute_event('evt_carol_lost', tests.purchase_of('buy-carol@utter.test', 2),
                                          'charge.dispute.closed', 'lost')),
  'reconciled', 'and lost');
select results_eq(
  $$ select status, reversed_credits from public.purchases where user_id = tests.get_user_id('buy-carol@utter.test') order by msg_id $$,
  $$ values ('paid', 0), ('disputed', 60) $$, 'a lost dispute keeps its credits taken; an inquiry takes none');
select is(tests.credits('buy-carol@utter.test'), 160, 'carol keeps the first pack only');
select ok(tests.credits_match_ledger(), 'every balance equals its ledger');

select * from finish();
rollback;
