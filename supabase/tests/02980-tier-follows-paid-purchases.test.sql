-- A paid purchase moves its buyer to the paid tier (more jobs at once). A purchase
-- refunded in full or held by a dispute kept the tier: buy the smallest pack, take the
-- money back, keep the paid tier's limits. The tier now follows the purchases: paid
-- while one is paid, free once none is; a won dispute restores it; a tier an operator
-- set by hand (any other than free and paid) is left alone.
--   alice a11ce000-...-000000002981, bob b0b00000-...-000000002982
begin;
select plan(7);

select tests.create_user('tier-alice@utter.test', 'a11ce000-0000-4000-8000-000000002981');
select tests.create_user('tier-bob@utter.test', 'b0b00000-0000-4000-8000-000000002982');
-- The purchases their owners inserted (with ids the test can name).
insert into public.purchases (id, user_id, pack_id) values
  ('a11ce000-0000-4000-8000-00000000a981', 'a11ce000-0000-4000-8000-000000002981', 'starter'),
  ('a11ce000-0000-4000-8000-00000000a982', 'a11ce000-0000-4000-8000-000000002981', 'starter'),
  ('b0b00000-0000-4000-8000-00000000b981', 'b0b00000-0000-4000-8000-000000002982', 'starter');

-- What Stripe sends, signed and verified by the webhook receiver.
create function pg_temp.paid(purchase uuid) returns jsonb language sql stable as $$
  select jsonb_build_object('id', 'evt_paid_' || replace(purchase::text, '-', ''), 'type', 'checkout.session.completed',
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'cs_' || replace(purchase::text, '-', ''), 'object', 'checkout.session',
      'amount_total', p.price_cents, 'currency', p.currency, 'payment_status', 'paid',
      'payment_intent', 'pi_' || replace(purchase::text, '-', ''),
      'metadata', jsonb_build_object('purchase_id', purchase, 'user_id', p.user_id))))
  from public.purchases p where p.id = purchase
$$;
create function pg_temp.refunded(purchase uuid) returns jsonb language sql stable as $$
  select jsonb_build_object('id', 'evt_refund_' || replace(purchase::text, '-', ''), 'type', 'charge.refunded',
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'ch_' || replace(purchase::text, '-', ''), 'object', 'charge', 'amount', p.price_cents,
      'amount_refunded', p.price_cents, 'payment_intent', 'pi_' || replace(purchase::text, '-', ''))))
  from public.purchases p where p.id = purchase
$$;
create function pg_temp.dispute(purchase uuid, event_type text, status text) returns jsonb language sql stable as $$
  select jsonb_build_object('id', 'evt_' || status || '_' || replace(purchase::text, '-', ''), 'type', event_type,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'dp_' || replace(purchase::text, '-', ''), 'object', 'dispute', 'status', status,
      'payment_intent', 'pi_' || replace(purchase::text, '-', ''))))
$$;
create function pg_temp.tier(uid uuid) returns text language sql stable as $$
  select tier from public.profiles where id = uid
$$;

select billing.apply_stripe_event(pg_temp.paid('a11ce000-0000-4000-8000-00000000a981'));
select billing.apply_stripe_event(pg_temp.paid('a11ce000-0000-4000-8000-00000000a982'));
select billing.apply_stripe_event(pg_temp.refunded('a11ce000-0000-4000-8000-00000000a981'));
select is(pg_temp.tier('a11ce000-0000-4000-8000-000000002981'), 'paid',
  'one purchase refunded in full, another still paid: the paid tier stays');
select billing.apply_stripe_event(pg_temp.refunded('a11ce000-0000-4000-8000-00000000a982'));
select is(pg_temp.tier('a11ce000-0000-4000-8000-000000002981'), 'free',
  'every purchase refunded in full: back to the free tier');
select is((select max_concurrent_jobs from public.tier_limits l join public.profiles p on p.tier = l.tier
           where p.id = 'a11ce000-0000-4000-8000-000000002981'), 2, 'with the free tier''s limits');

select billing.apply_stripe_event(pg_temp.paid('b0b00000-0000-4000-8000-00000000b981'));
select is(pg_temp.tier('b0b00000-0000-4000-8000-000000002982'), 'paid', 'a paid purchase moves bob to the paid tier');
select billing.apply_stripe_event(pg_temp.dispute('b0b00000-0000-4000-8000-00000000b981', 'charge.dispute.created', 'needs_response'));
select is(pg_temp.tier('b0b00000-0000-4000-8000-000000002982'), 'free', 'a dispute holding his only purchase ends it');
select billing.apply_stripe_event(pg_temp.dispute('b0b00000-0000-4000-8000-00000000b981', 'charge.dispute.closed', 'won'));
select is(pg_temp.tier('b0b00000-0000-4000-8000-000000002982'), 'paid', 'a won dispute restores it');

insert into public.tier_limits (tier, max_concurrent_jobs, description) values ('partner', 8, 'set by an operator');
update public.profiles set tier = 'partner' where id = 'b0b00000-0000-4000-8000-000000002982';
select billing.apply_stripe_event(jsonb_set(pg_temp.dispute('b0b00000-0000-4000-8000-00000000b981', 'charge.dispute.created', 'needs_response'),
                                            '{id}', '"evt_second_dispute"'));
select is(pg_temp.tier('b0b00000-0000-4000-8000-000000002982'), 'partner', 'a tier an operator set is left alone');

select * from finish();
rollback;
