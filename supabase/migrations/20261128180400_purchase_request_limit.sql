-- Each purchase costs a Stripe API call (its Checkout Session), and only purchases
-- still pending were capped (5 at once, 20261128140000_credit_purchases.sql): once the
-- listener had opened their checkouts a user could insert more without end, spending
-- the service's Stripe rate limit. Purchases now count against the request limits
-- (private.count_request, the same fixed windows and PGRST/429 answer as the inserts
-- that start work) under the kind 'purchase'. Its own trigger, named to run after the
-- purchase's insert trigger has settled user_id and checked the pack.

alter table private.request_limits drop constraint request_limits_task_type;
alter table private.request_limits add constraint request_limits_task_type
  check (task_type in ('generate', 'design_preview', 'clone', 'transcribe', 'purchase'));
insert into private.request_limits (task_type, max_requests, per_window) values
  ('purchase', 10, '1 hour');

create function private.count_purchase_request() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform private.count_request(new.user_id, 'purchase');
  return new;
end
$$;
create trigger purchases_zz_request_limit before insert on public.purchases
  for each row execute function private.count_purchase_request();

revoke all on all functions in schema private from public, anon, authenticated, service_role;
