-- One random change to the demo table; scripts/demo.sh runs it every second.
SELECT CASE WHEN r < 0.35 THEN 'insert' WHEN r < 0.9 THEN 'update' ELSE 'delete' END AS op FROM (SELECT random() r) x \gset
SELECT :'op' = 'insert' AS do_insert, :'op' = 'update' AS do_update, :'op' = 'delete' AS do_delete \gset
\if :do_insert
INSERT INTO orders (tenant, customer, ship_to, item, qty, total)
VALUES ((ARRAY['acme','globex'])[1 + floor(random()*2)::int],
        (ARRAY['Ada Lovelace','Grace Hopper','Alan Turing','Edsger Dijkstra','Barbara Liskov','Ken Thompson'])[1 + floor(random()*6)::int],
        (1 + floor(random()*200)::int) || ' Harbour Road, Shelbyville',
        'gadget ' || floor(random()*100)::int, 1 + floor(random()*5)::int, round((random()*100)::numeric, 2));
\elif :do_update
UPDATE orders SET status = (ARRAY['new','paid','packed','shipped'])[1 + floor(random()*4)::int], qty = qty + 1, updated_at = now()
 WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1);
\else
DELETE FROM orders WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1) AND (SELECT count(*) FROM orders) > 3;
\endif
