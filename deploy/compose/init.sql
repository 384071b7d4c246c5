-- The example's table (compose.yaml runs it on the first start).
CREATE TABLE public.orders (
  id bigserial PRIMARY KEY,
  tenant text NOT NULL,
  item text NOT NULL,
  status text NOT NULL DEFAULT 'new'
);
ALTER TABLE public.orders REPLICA IDENTITY FULL;
