"""メールテンプレート: shared and personal mail templates with placeholders."""
