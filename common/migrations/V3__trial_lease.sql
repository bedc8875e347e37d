-- The TRAIN lease (a train worker's slot) a trial was handed to. A slot that asks for work again
-- while its trial is still RUNNING never received it (the advisor's reply was lost): the advisor
-- hands the same trial over again instead of leaving it RUNNING for good.
ALTER TABLE trials ADD COLUMN lease_id uuid;
