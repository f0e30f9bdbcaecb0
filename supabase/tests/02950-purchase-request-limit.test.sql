-- Each purchase costs a Stripe API call (its Checkout Session). Only purchases still
-- pending were capped (5 at once): once the listener had opened their checkouts, a
-- user could insert more without end, each another session, spending the service's
-- Stripe rate limit. Purchases now count against a request limit like the inserts that
-- start work (private.request_limits, kind 'purchase': 10 an hour), refused with
-- SQLSTATE PGRST, which PostgREST answers with HTTP 429 and Retry-After.
--   alice a11ce000-...-000000002951, bob b0b00000-...-000000002952
begin;
select plan(7);

select tests.create_user('prl-alice@utter.test', 'a11ce000-0000-4000-8000-000000002951');
select tests.create_user('prl-bob@utter.test', 'b0b00000-0000-4000-8000-000000002952');

select is((select max_requests || ' per ' || per_window from private.request_limits where task_type = 'purchase'),
  '10 per 01:00:00', 'purchases are limited to 10 an hour');

-- Ten purchases whose checkouts the listener opened: none is pending any more.
select tests.authenticate_as('prl-alice@utter.test');
insert into public.purchases (pack_id) select 'starter' from generate_series(1, 5);
select tests.clear_authentication();
update public.purchases set status = 'open', checkout_url = 'https://checkout.stripe.com/c/pay/cs_test';
select tests.authenticate_as('prl-alice@utter.test');
insert into public.purchases (pack_id) select 'starter' from generate_series(1, 5);
select tests.clear_authentication();
update public.purchases set status = 'open', checkout_url = 'https://checkout.stripe.com/c/pay/cs_test';

select tests.authenticate_as('prl-alice@utter.test');
select throws_like($$ insert into public.purchases (pack_id) values ('starter') $$,
  '%"message": "too many purchase requests: the limit is 10 per 1 hour"%',
  'the eleventh purchase in the hour is refused');
select throws_ok($$ insert into public.purchases (pack_id) values ('starter') $$, 'PGRST', null,
  'with SQLSTATE PGRST (HTTP 429)');
select is((select count(*)::integer from public.purchases), 10, 'the refused purchase left no row');
select tests.clear_authentication();
select is(tests.queued('checkout'), 10, 'and no checkout job');

select tests.authenticate_as('prl-bob@utter.test');
select lives_ok($$ insert into public.purchases (pack_id) values ('starter') $$,
  'another user''s purchase is counted on its own');
select tests.clear_authentication();
select is((select requests from private.request_counts
           where user_id = 'a11ce000-0000-4000-8000-000000002951' and task_type = 'purchase'), 10,
  'only accepted purchases were counted');

select * from finish();
rollback;
