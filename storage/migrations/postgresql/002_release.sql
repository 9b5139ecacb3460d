-- A job may be reserved at the highest price among the providers that could serve it (failover), and
-- settled at the price of the one that did: the difference is given back as a 'release' row.
-- (SQLite rebuilds the table; PostgreSQL changes the constraint in place.)
ALTER TABLE ledger DROP CONSTRAINT ledger_kind,
    ADD CONSTRAINT ledger_kind CHECK (kind IN ('reserve', 'settle', 'refund', 'release'));

-- A release only accompanies a settle, and never gives back more than was reserved.
CREATE OR REPLACE FUNCTION ledger_check_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind IN ('settle', 'refund') THEN
        IF EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind IN ('settle', 'refund')) THEN
            RAISE EXCEPTION 'job already settled or refunded' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve') THEN
            RAISE EXCEPTION 'job has no reservation' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSIF NEW.kind = 'release' THEN
        IF NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'settle') THEN
            RAISE EXCEPTION 'release without settle' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NEW.amount_micros + (SELECT amount_micros FROM ledger WHERE job_id = NEW.job_id AND kind = 'settle')
           > (SELECT amount_micros FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve') THEN
            RAISE EXCEPTION 'release larger than the reservation' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
