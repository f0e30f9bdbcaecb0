-- Buying credits with Stripe Checkout. A user inserts a purchase naming a pack; the
-- insert queues a `checkout` job in the same transaction; the listener creates the
-- Checkout Session and writes its URL back through worker.record_checkout; Stripe's
-- signed webhook reaches billing.apply_stripe_event, the only way credits are bought.
-- Errors a client can cause: 22023 invalid input (400), PT429 too many purchases
-- waiting for their checkout (429).

create schema if not exists billing;  -- the webhook receiver's API: role utter_billing only
revoke all on schema billing from public;

-- The webhook receiver's own login role: executes billing.apply_stripe_event and
-- nothing else. Its password is set outside migrations, like utter_worker's.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'utter_billing') then
    create role utter_billing login noinherit;
  end if;
end
$$;
grant usage on schema billing to utter_billing;

select pgmq.create('checkout');  -- {purchase_id}: create the purchase's Checkout Session

-- Packs, priced from the rate card (private.task_cost): 1 credit speaks up to 500
-- characters or makes one design preview. Starter is 30,000 characters for $2.99 and
-- Studio 120,000 for $9.99, the same characters-per-dollar as the live app's packs.
create table public.credit_packs (
  id text primary key constraint credit_packs_id_format check (id ~ '^[a-z][a-z0-9_]{0,39}$'),
  name text not null constraint credit_packs_name_length check (char_length(name) between 1 and 100),
  credits integer not null constraint credit_packs_credits_positive check (credits > 0),
  -- In the currency's smallest unit, as Stripe's unit_amount; Stripe refuses charges
  -- under 50 cents (docs.stripe.com/currencies#minimum-and-maximum-charge-amounts).
  price_cents integer not null constraint credit_packs_price_minimum check (price_cents >= 50),
  currency text not null default 'usd' constraint credit_packs_currency_format check (currency ~ '^[a-z]{3}$'),
  active boolean not null default true,
  sort_order smallint not null unique
);
comment on table public.credit_packs is 'Credit packs for sale; only active packs can be bought.';
insert into public.credit_packs (id, name, credits, price_cents, currency, sort_order) values
  ('starter', 'Starter', 60, 299, 'usd', 1),
  ('studio', 'Studio', 240, 999, 'usd', 2);

create table public.purchases (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  pack_id text not null references public.credit_packs (id),
  -- Copied from the pack at insert: what was offered is what is charged and credited.
  credits integer not null constraint purchases_credits_positive check (credits > 0),
  price_cents integer not null constraint purchases_price_positive check (price_cents > 0),
  currency text not null,
  -- pending: creating the Checkout Session; open: checkout_url is ready; paid: credited;
  -- refunded: every credit taken back; disputed: a chargeback holds the credits back;
  -- failed: no Checkout Session could be created (error says why).
  status text not null default 'pending'
    constraint purchases_status check (status in ('pending', 'open', 'paid', 'refunded', 'disputed', 'failed')),
  checkout_session_id text unique,
  checkout_url text,
  checkout_expires_at timestamptz,
  payment_intent_id text unique,
  -- Credits taken back by refunds and disputes, and the part of them the balance could
  -- not cover (owed, and settled from the user's next purchase).
  reversed_credits integer not null default 0
    constraint purchases_reversed_range check (reversed_credits between 0 and credits),
  debt_credits integer not null default 0
    constraint purchases_debt_range check (debt_credits between 0 and reversed_credits),
  error text,
  attempts integer not null default 0,
  msg_id bigint,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  paid_at timestamptz,
  constraint purchases_url_when_open check (status <> 'open' or checkout_url is not null),
  constraint purchases_paid_when_credited
    check ((status in ('paid', 'refunded', 'disputed')) = (paid_at is not null))
);
create index purchases_user_created on public.purchases (user_id, created_at desc, id);
create index purchases_user_debt on public.purchases (user_id) where debt_credits > 0;

-- Stripe events applied, one row each: the primary key makes a redelivered event a
-- no-op. Only the facts the balance depends on are kept, not the payload.
create table private.stripe_events (
  id text primary key,  -- the event's id (evt_...)
  type text not null,
  purchase_id uuid references public.purchases (id) on delete cascade,
  payment_intent_id text,
  -- charge.refunded: the charge's amount and its cumulative amount_refunded
  charge_amount bigint,
  refunded_amount bigint,
  -- charge.dispute.*: the dispute and its status
  dispute_id text,
  dispute_status text,
  outcome text not null,
  received_at timestamptz not null default now()
);
create index stripe_events_payment_intent on private.stripe_events (payment_intent_id);
alter table private.stripe_events enable row level security;

-- The ledger learns purchases: additive reasons and a link to the purchase.
alter table private.credit_ledger add column purchase_id uuid references public.purchases (id) on delete cascade;
alter table private.credit_ledger drop constraint credit_ledger_reason;
alter table private.credit_ledger add constraint credit_ledger_reason check (
  reason in ('signup_grant', 'charge', 'refund', 'purchase', 'purchase_reversal', 'debt_settlement'));
-- A purchase is credited at most once, whatever Stripe delivers.
create unique index credit_ledger_one_credit_per_purchase on private.credit_ledger (purchase_id)
  where reason = 'purchase';
create index credit_ledger_purchase on private.credit_ledger (purchase_id) where purchase_id is not null;

create function private.max_waiting_purchases() returns integer
language plpgsql immutable set search_path = '' as $$ begin return 5; end $$;

-- Inserts from the browser ----------------------------------------------------------

create function private.before_purchase_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  pack public.credit_packs;
  waiting integer;
begin
  new.user_id := private.inserting_user(new.user_id);
  select * into pack from public.credit_packs p where p.id = new.pack_id and p.active;
  if not found then
    perform private.invalid(format('unknown credit pack %L', new.pack_id),
      'Use one of: ' || coalesce((select string_agg(p.id, ', ' order by p.sort_order)
                                  from public.credit_packs p where p.active), 'none on sale'));
  end if;
  -- Each purchase costs a Stripe API call: the profile lock serialises one user's
  -- inserts so the limit cannot be raced past.
  perform 1 from public.profiles where id = new.user_id for update;
  select count(*) into waiting from public.purchases
  where user_id = new.user_id and status = 'pending';
  if waiting >= private.max_waiting_purchases() then
    raise exception using errcode = 'PT429',
      message = format('too many purchases waiting for their checkout: %s (limit %s)',
                       waiting, private.max_waiting_purchases()),
      hint = 'Wait for their checkout links.';
  end if;
  new.credits := pack.credits;
  new.price_cents := pack.price_cents;
  new.currency := pack.currency;
  new.status := 'pending';
  new.checkout_session_id := null;
  new.checkout_url := null;
  new.checkout_expires_at := null;
  new.payment_intent_id := null;
  new.reversed_credits := 0;
  new.debt_credits := 0;
  new.error := null;
  new.attempts := 0;
  new.paid_at := null;
  new.created_at := now();
  new.updated_at := now();
  -- Ids only in the message; a failed insert rolls the message back with it.
  new.msg_id := private.enqueue('checkout', jsonb_build_object('purchase_id', new.id));
  return new;
end
$$;
create trigger purchases_before_insert before insert on public.purchases
  for each row execute function private.before_purchase_insert();

-- Access and Realtime ---------------------------------------------------------------

alter table public.credit_packs enable row level security;
alter table public.purchases enable row level security;
revoke all on public.credit_packs, public.purchases from anon, authenticated, service_role;

grant select on public.credit_packs to anon, authenticated;
create policy "anyone can read credit packs" on public.credit_packs
  for select to anon, authenticated using (true);

grant select on public.purchases to authenticated;
grant insert (pack_id) on public.purchases to authenticated;
create policy "users read their own purchases" on public.purchases
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users create their own purchases" on public.purchases
  for insert to authenticated with check (user_id = (select auth.uid()));

-- What a purchase shows its owner over Realtime: everything but the queue bookkeeping.
create or replace function private.broadcast_record(tbl text, row_data jsonb) returns jsonb
language plpgsql immutable set search_path = '' as $$
begin
  return case tbl
    when 'tasks' then jsonb_build_object(
      'id', row_data -> 'id', 'type', row_data -> 'type', 'status', row_data -> 'status',
      'progress', row_data -> 'progress', 'error', row_data -> 'error', 'cost', row_data -> 'cost',
      'attempts', row_data -> 'attempts', 'generation_id', row_data -> 'generation_id',
      'design_preview_id', row_data -> 'design_preview_id', 'voice_id', row_data -> 'voice_id',
      'cancel_requested_at', row_data -> 'cancel_requested_at',
      'dismissed_at', row_data -> 'dismissed_at', 'created_at', row_data -> 'created_at',
      'started_at', row_data -> 'started_at', 'ended_at', row_data -> 'ended_at')
    when 'profiles' then jsonb_build_object('id', row_data -> 'id', 'credits', row_data -> 'credits',
                                            'tier', row_data -> 'tier')
    when 'purchases' then row_data - array['user_id', 'msg_id', 'attempts']
    else row_data - 'user_id'  -- generations, voices, design_previews hold nothing internal
  end;
end
$$;
create trigger broadcast_changes after insert or update or delete on public.purchases
  for each row execute function private.broadcast_change();
alter publication supabase_realtime add table public.purchases;

-- The listener's checkout jobs --------------------------------------------------------

-- Reads up to `quantity` checkout messages and claims each purchase, in one round
-- trip. One row per message, with `claim` = {outcome, job}: claimed (create the
-- session), ended (the purchase is past pending), missing, gave_up (the attempt
-- limit was reached: failed) or malformed; every outcome but claimed archived it.
create function worker.claim_checkouts(
  visibility_seconds integer, quantity integer, max_attempts integer
) returns table (msg_id bigint, enqueued_at timestamptz, claim jsonb)
language plpgsql security definer set search_path = '' as $$
declare
  message record;
  purchase public.purchases;
  purchase_id uuid;
begin
  for message in select * from pgmq.read('checkout', visibility_seconds, quantity) loop
    msg_id := message.msg_id;
    enqueued_at := message.enqueued_at;
    purchase_id := private.uuid_or_null(message.message ->> 'purchase_id');
    select * into purchase from public.purchases p where p.id = purchase_id for update;
    if purchase_id is null then
      perform pgmq.archive('checkout', message.msg_id);
      claim := jsonb_build_object('outcome', 'malformed', 'message', message.message);
    elsif purchase.id is null then
      perform pgmq.archive('checkout', message.msg_id);
      claim := jsonb_build_object('outcome', 'missing');
    elsif purchase.status <> 'pending' then
      perform pgmq.archive('checkout', message.msg_id);
      claim := jsonb_build_object('outcome', 'ended', 'status', purchase.status);
    elsif purchase.attempts >= max_attempts then
      update public.purchases p
      set status = 'failed', updated_at = now(),
          error = format('gave up after %s attempts: %s', purchase.attempts,
                         coalesce(purchase.error, 'the listener stopped while creating the checkout each time'))
      where p.id = purchase.id;
      perform pgmq.archive('checkout', message.msg_id);
      claim := jsonb_build_object('outcome', 'gave_up');
    else
      update public.purchases p set attempts = p.attempts + 1, msg_id = message.msg_id
      where p.id = purchase.id
      returning * into purchase;
      claim := jsonb_build_object('outcome', 'claimed', 'job', jsonb_build_object(
        'purchase_id', purchase.id, 'user_id', purchase.user_id, 'attempt', purchase.attempts,
        'pack_id', purchase.pack_id,
        'pack_name', (select k.name from public.credit_packs k where k.id = purchase.pack_id),
        'credits', purchase.credits, 'price_cents', purchase.price_cents,
        'currency', purchase.currency));
    end if;
    return next;
  end loop;
end
$$;

-- Writes the Checkout Session back and archives the message. Outcomes: recorded,
-- already_recorded (the same session again: no write), missing, or the status the
-- purchase had already moved to (paid, failed, ...).
create function worker.record_checkout(
  purchase_id uuid, session_id text, url text, expires_at timestamptz
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  purchase public.purchases;
begin
  if session_id is null or session_id !~ '^cs_[A-Za-z0-9_]+$' then
    raise exception using errcode = '22023',
      message = format('record_checkout needs a Checkout Session id (cs_...), got %L', session_id);
  end if;
  if url is null or url !~ '^https?://' then
    raise exception using errcode = '22023',
      message = format('record_checkout needs an http(s) checkout URL, got %L', url);
  end if;
  select * into purchase from public.purchases p where p.id = record_checkout.purchase_id for update;
  if not found then
    return 'missing';
  end if;
  if purchase.msg_id is not null then
    perform pgmq.archive('checkout', purchase.msg_id);
  end if;
  if purchase.checkout_session_id = session_id and purchase.checkout_url is not null then
    return 'already_recorded';
  end if;
  if purchase.status <> 'pending' then
    return purchase.status;
  end if;
  update public.purchases p
  set status = 'open', checkout_session_id = session_id, checkout_url = url,
      checkout_expires_at = expires_at, error = null, updated_at = now()
  where p.id = purchase.id;
  return 'recorded';
end
$$;

-- A failed attempt to create the session. Retryable failures with attempts left go
-- back to the queue after `retry_delay_seconds`; the rest fail the purchase and
-- dead-letter the message. Outcomes: retrying, failed, missing, or the status the
-- purchase had already moved to.
create function worker.fail_checkout(
  purchase_id uuid, reason text, retryable boolean, retry_delay_seconds integer, max_attempts integer
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  purchase public.purchases;
begin
  select * into purchase from public.purchases p where p.id = fail_checkout.purchase_id for update;
  if not found then
    return 'missing';
  end if;
  if purchase.status <> 'pending' then
    return purchase.status;
  end if;
  if retryable and purchase.attempts < max_attempts then
    update public.purchases p set error = reason, updated_at = now() where p.id = purchase.id;
    if purchase.msg_id is not null then
      perform pgmq.set_vt('checkout', purchase.msg_id, greatest(retry_delay_seconds, 0));
    end if;
    return 'retrying';
  end if;
  update public.purchases p
  set status = 'failed', updated_at = now(),
      error = case when retryable then format('%s (gave up after %s attempts)', reason, purchase.attempts)
                   else reason end
  where p.id = purchase.id;
  if purchase.msg_id is not null then
    perform pgmq.archive('checkout', purchase.msg_id);
  end if;
  return 'failed';
end
$$;

-- Stripe's webhook ------------------------------------------------------------------

-- Brings a credited purchase's taken-back credits in line with every refund and
-- dispute recorded for its payment: a refund takes back its share of the credits
-- (rounded up); a dispute that withdrew funds takes back all of them until it is won.
-- Takes from the balance what it holds and records the rest as debt; gives back what
-- a won dispute returns, cancelling debt first.
create function private.reconcile_purchase(target_id uuid) returns void
language plpgsql security definer set search_path = '' as $$
declare
  purchase public.purchases;
  refunded bigint;
  charged bigint;
  held boolean;
  wanted integer;
  delta integer;
  balance integer;
  taken integer;
  forgiven integer;
begin
  select * into purchase from public.purchases p where p.id = target_id for update;
  if not found or purchase.status not in ('paid', 'refunded', 'disputed') then
    return;  -- nothing credited yet: the events wait for the credit
  end if;
  select max(e.refunded_amount), max(e.charge_amount) into refunded, charged
  from private.stripe_events e
  where e.payment_intent_id = purchase.payment_intent_id and e.type = 'charge.refunded';
  -- Inquiries (warning_*) move no money; a dispute is over for us once won.
  select exists (
    select 1 from private.stripe_events d
    where d.payment_intent_id = purchase.payment_intent_id and d.dispute_id is not null
      and d.dispute_status not like 'warning\_%'
      and not exists (select 1 from private.stripe_events w
                      where w.dispute_id = d.dispute_id and w.dispute_status = 'won')
  ) into held;
  wanted := case
    when held then purchase.credits
    when coalesce(refunded, 0) > 0 and coalesce(charged, 0) > 0
      then least(purchase.credits, ceil(purchase.credits * refunded::numeric / charged)::integer)
    else 0
  end;
  delta := wanted - purchase.reversed_credits;
  if delta > 0 then
    select credits into balance from public.profiles where id = purchase.user_id for update;
    taken := least(balance, delta);
    if taken > 0 then
      update public.profiles set credits = credits - taken, updated_at = now() where id = purchase.user_id;
      insert into private.credit_ledger (user_id, purchase_id, delta, reason)
      values (purchase.user_id, purchase.id, -taken, 'purchase_reversal');
    end if;
    purchase.debt_credits := purchase.debt_credits + (delta - taken);
  elsif delta < 0 then
    forgiven := least(purchase.debt_credits, -delta);
    if -delta - forgiven > 0 then
      update public.profiles set credits = credits + (-delta - forgiven), updated_at = now()
      where id = purchase.user_id;
      insert into private.credit_ledger (user_id, purchase_id, delta, reason)
      values (purchase.user_id, purchase.id, -delta - forgiven, 'purchase_reversal');
    end if;
    purchase.debt_credits := purchase.debt_credits - forgiven;
  end if;
  update public.purchases p
  set reversed_credits = wanted, debt_credits = purchase.debt_credits,
      status = case when held then 'disputed' when wanted = purchase.credits then 'refunded' else 'paid' end,
      updated_at = now()
  where p.id = purchase.id
    and (p.reversed_credits, p.debt_credits, p.status) is distinct from
        (wanted, purchase.debt_credits,
         case when held then 'disputed' when wanted = purchase.credits then 'refunded' else 'paid' end);
end
$$;

-- Credits a paid purchase once: its credits, less any debt the user owes from
-- earlier reversals.
create function private.credit_purchase(purchase public.purchases, session jsonb) returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  credited integer;
  owed integer;
  settled integer;
  debtor record;
  part integer;
begin
  insert into private.credit_ledger (user_id, purchase_id, delta, reason)
  values (purchase.user_id, purchase.id, purchase.credits, 'purchase')
  on conflict do nothing;
  get diagnostics credited = row_count;
  if credited = 0 then
    return false;
  end if;
  -- A paid purchase moves the account to the paid tier (public.tier_limits).
  update public.profiles set credits = credits + purchase.credits, tier = 'paid', updated_at = now()
  where id = purchase.user_id;
  update public.purchases p
  set status = 'paid', paid_at = now(), updated_at = now(),
      checkout_session_id = coalesce(p.checkout_session_id, session ->> 'id'),
      payment_intent_id = session ->> 'payment_intent'
  where p.id = purchase.id;

  select coalesce(sum(p.debt_credits), 0) into owed from public.purchases p
  where p.user_id = purchase.user_id and p.debt_credits > 0;
  settled := least(owed, purchase.credits);
  if settled > 0 then
    update public.profiles set credits = credits - settled, updated_at = now() where id = purchase.user_id;
    insert into private.credit_ledger (user_id, purchase_id, delta, reason)
    values (purchase.user_id, purchase.id, -settled, 'debt_settlement');
    for debtor in select p.id, p.debt_credits from public.purchases p
                  where p.user_id = purchase.user_id and p.debt_credits > 0
                  order by p.created_at, p.id for update loop
      exit when settled = 0;
      part := least(settled, debtor.debt_credits);
      update public.purchases p set debt_credits = p.debt_credits - part, updated_at = now()
      where p.id = debtor.id;
      settled := settled - part;
    end loop;
  end if;
  return true;
end
$$;

create function private.stripe_event_invalid(message text) returns void
language plpgsql set search_path = '' as $$
begin
  raise exception using errcode = '22023', message = message;
end
$$;

-- The webhook receiver's one call, made after it verified Stripe's signature. Applies
-- an event once (its id is recorded; a redelivery returns `duplicate` and changes
-- nothing), in any order: refunds and disputes that arrive before the payment wait
-- for it. Returns {outcome, purchase_id}; outcome is credited, already_credited,
-- awaiting_payment (paid later by checkout.session.async_payment_succeeded),
-- reconciled (a refund or dispute applied to a credited purchase), recorded (kept
-- for a payment not yet credited) or duplicate. A malformed event, an unhandled type
-- or a session that matches no purchase raises 22023 and changes nothing.
create function billing.apply_stripe_event(event jsonb) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  event_id text := event ->> 'id';
  event_type text := event ->> 'type';
  obj jsonb := event #> '{data,object}';
  payment_intent text;
  purchase public.purchases;
  applied text;
  inserted integer;
begin
  if jsonb_typeof(event) is distinct from 'object' or event_id is null or event_id !~ '^evt_[A-Za-z0-9_]+$' then
    perform private.stripe_event_invalid('not a Stripe event: no id of the form evt_...');
  end if;
  if event_type is null or event_type not in (
       'checkout.session.completed', 'checkout.session.async_payment_succeeded',
       'charge.refunded', 'charge.dispute.created', 'charge.dispute.closed') then
    perform private.stripe_event_invalid(format('unhandled Stripe event type %L', event_type));
  end if;
  if jsonb_typeof(obj) is distinct from 'object' then
    perform private.stripe_event_invalid(format('event %s has no data.object', event_id));
  end if;
  payment_intent := obj ->> 'payment_intent';

  if event_type like 'checkout.session.%' then
    if obj ->> 'object' is distinct from 'checkout.session' then
      perform private.stripe_event_invalid(format('event %s: data.object is not a checkout.session', event_id));
    end if;
    select * into purchase from public.purchases p
    where p.id = private.uuid_or_null(obj #>> '{metadata,purchase_id}');
    if not found then
      perform private.stripe_event_invalid(format('checkout session %s matches no purchase (metadata.purchase_id %L)',
                                                  obj ->> 'id', obj #>> '{metadata,purchase_id}'));
    end if;
    if (obj #>> '{metadata,user_id}') is distinct from purchase.user_id::text then
      perform private.stripe_event_invalid(format('checkout session %s: metadata.user_id is not purchase %s''s owner',
                                                  obj ->> 'id', purchase.id));
    end if;
    if purchase.checkout_session_id is not null and purchase.checkout_session_id <> (obj ->> 'id') then
      perform private.stripe_event_invalid(format('checkout session %s is not purchase %s''s session %s',
                                                  obj ->> 'id', purchase.id, purchase.checkout_session_id));
    end if;
    if (obj ->> 'amount_total') is distinct from purchase.price_cents::text
       or (obj ->> 'currency') is distinct from purchase.currency then
      perform private.stripe_event_invalid(format('checkout session %s charged %s %s; purchase %s costs %s %s',
        obj ->> 'id', obj ->> 'amount_total', obj ->> 'currency', purchase.id, purchase.price_cents, purchase.currency));
    end if;
    if obj ->> 'payment_status' = 'paid' and payment_intent is null then
      perform private.stripe_event_invalid(format('paid checkout session %s names no payment_intent', obj ->> 'id'));
    end if;
  elsif payment_intent is null then
    perform private.stripe_event_invalid(format('event %s: %s names no payment_intent', event_id, obj ->> 'object'));
  elsif event_type = 'charge.refunded' and (
          obj ->> 'object' is distinct from 'charge'
          or jsonb_typeof(obj -> 'amount') is distinct from 'number'
          or jsonb_typeof(obj -> 'amount_refunded') is distinct from 'number') then
    perform private.stripe_event_invalid(format('event %s: data.object is not a charge with amount and amount_refunded', event_id));
  elsif event_type like 'charge.dispute.%' and (
          obj ->> 'object' is distinct from 'dispute' or obj ->> 'id' is null or obj ->> 'status' is null) then
    perform private.stripe_event_invalid(format('event %s: data.object is not a dispute with id and status', event_id));
  end if;

  -- Everything about one payment happens in order, so a refund racing the payment's
  -- credit is seen by one or the other.
  if payment_intent is not null then
    perform pg_advisory_xact_lock(hashtextextended('stripe payment ' || payment_intent, 0));
  end if;
  if purchase.id is not null then
    select * into purchase from public.purchases p where p.id = purchase.id for update;
  else
    select * into purchase from public.purchases p where p.payment_intent_id = payment_intent for update;
  end if;

  insert into private.stripe_events (id, type, purchase_id, payment_intent_id, charge_amount,
                                     refunded_amount, dispute_id, dispute_status, outcome)
  values (event_id, event_type, purchase.id, payment_intent,
          case when event_type = 'charge.refunded' then (obj ->> 'amount')::bigint end,
          case when event_type = 'charge.refunded' then (obj ->> 'amount_refunded')::bigint end,
          case when event_type like 'charge.dispute.%' then obj ->> 'id' end,
          case when event_type like 'charge.dispute.%' then obj ->> 'status' end,
          'applying')
  on conflict (id) do nothing;
  get diagnostics inserted = row_count;
  if inserted = 0 then
    return jsonb_build_object('outcome', 'duplicate', 'purchase_id', purchase.id);
  end if;

  if event_type like 'checkout.session.%' then
    if obj ->> 'payment_status' is distinct from 'paid' then
      applied := 'awaiting_payment';
    elsif private.credit_purchase(purchase, obj) then
      perform private.reconcile_purchase(purchase.id);
      applied := 'credited';
    else
      applied := 'already_credited';
    end if;
  elsif purchase.id is null then
    applied := 'recorded';
  else
    perform private.reconcile_purchase(purchase.id);
    applied := 'reconciled';
  end if;
  update private.stripe_events e set outcome = applied where e.id = event_id;
  return jsonb_build_object('outcome', applied, 'purchase_id', purchase.id);
end
$$;

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
revoke all on all functions in schema billing from public, anon, authenticated, service_role;
grant execute on function worker.claim_checkouts(integer, integer, integer),
  worker.record_checkout(uuid, text, text, timestamptz),
  worker.fail_checkout(uuid, text, boolean, integer, integer) to utter_worker;
grant execute on function billing.apply_stripe_event(jsonb) to utter_billing;
