DROP FUNCTION IF EXISTS novanet_analyze(text[]);
