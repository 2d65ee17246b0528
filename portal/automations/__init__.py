"""セールスオートメーション: sequences of template mails, enrolments, the due-step runner and stop on reply."""
