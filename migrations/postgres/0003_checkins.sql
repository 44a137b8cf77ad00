-- One row per accepted check-in of a netbooted machine (`POST /api/checkin`): what it
-- says it booted. Refused check-ins are never stored. Times are RFC 3339 UTC text.
CREATE TABLE checkins (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at TEXT    NOT NULL,
    carrier     TEXT    NOT NULL,
    machine     TEXT    NOT NULL,
    generation  BIGINT  NOT NULL,
    mac         TEXT    NOT NULL,
    cmdline     TEXT    NOT NULL,
    source      TEXT    NOT NULL
);
CREATE INDEX checkins_by_machine ON checkins (carrier, machine, id);
