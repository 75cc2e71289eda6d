-- The demo's fleet, defined the way a platform team defines it: plain SQL (docs/schema.md).
-- scripts/demo passes the ports of the redis-server processes it started as psql variables
-- (psql -v p1=PORT ... -f seed.sql). Pool ssd-a lets 1 save run at a time, ssd-b 2 (pools.limits in the configuration).
INSERT INTO instances (id, host, port, pool) VALUES
    ('cache-a1', '127.0.0.1', :p1, 'ssd-a'),
    ('cache-a2', '127.0.0.1', :p2, 'ssd-a'),
    ('cache-a3', '127.0.0.1', :p3, 'ssd-a'),
    ('cache-b1', '127.0.0.1', :p4, 'ssd-b'),
    ('cache-b2', '127.0.0.1', :p5, 'ssd-b'),
    ('cache-b3', '127.0.0.1', :p6, 'ssd-b');

-- Scheduled saves. Six fields = seconds first: these fire every 15 or 20 seconds, so the demo
-- shows runs within a minute; a real fleet would say '*/15 * * * *' (every 15 minutes).
INSERT INTO tasks (instance_id, schedule, description) VALUES
    ('cache-a1', '*/15 * * * * *', 'every 15 s'),
    ('cache-a2', '5-59/15 * * * * *', 'every 15 s, 5 s later'),
    ('cache-a3', '10-59/20 * * * * *', 'every 20 s'),
    ('cache-b1', '*/15 * * * * *', 'every 15 s'),
    ('cache-b2', '*/15 * * * * *', 'every 15 s, same second as cache-b1'),
    ('cache-b3', '0 */5 * * * *', 'every 5 minutes');
