-- A paid purchase moves its buyer to the paid tier (private.credit_purchase), but a
-- purchase refunded in full or held by a dispute kept it: buy the smallest pack, take
-- the money back, keep the paid tier's limits. After any change of a purchase's
-- status the tier follows the purchases: paid while one of them is paid, free once
-- none is (a won dispute brings it back). A tier an operator set by hand, any other
-- than free and paid, is left alone.

create function private.tier_follows_purchases() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  wanted text := case when exists (select 1 from public.purchases p
                                   where p.user_id = new.user_id and p.status = 'paid')
                      then 'paid' else 'free' end;
begin
  update public.profiles p set tier = wanted, updated_at = now()
  where p.id = new.user_id and p.tier in ('free', 'paid') and p.tier <> wanted;
  return null;
end
$$;
create trigger purchases_tier_follows after update of status on public.purchases
  for each row when (old.status is distinct from new.status
                     and (old.status in ('paid', 'refunded', 'disputed')
                          or new.status in ('paid', 'refunded', 'disputed')))
  execute function private.tier_follows_purchases();

revoke all on all functions in schema private from public, anon, authenticated, service_role;
