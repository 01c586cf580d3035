// Kubernetes name grammars (apimachinery validation), used for annotation names,
// label selectors and the names of the objects we read from untrusted manifests.

/** A name grammar: how long a name may be, and what it consists of (it starts and ends with an alphanumeric). */
interface NameGrammar {
  maxLength: number;
  pattern: RegExp;
  consistsOf: string;
}

const QUALIFIED_NAME_PART: NameGrammar = {
  maxLength: 63,
  pattern: /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/,
  consistsOf: 'alphanumeric characters, "-", "_" or "."',
};
const DNS1123_LABEL: NameGrammar = {
  maxLength: 63,
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
  consistsOf: 'lower case alphanumeric characters or "-"',
};
const DNS1123_SUBDOMAIN: NameGrammar = {
  maxLength: 253,
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
  consistsOf: 'lower case alphanumeric characters, "-" or "."',
};

/** Why `value` does not follow `grammar`, or null when it does; `emptyOk` for values that may be empty. */
function grammarProblem(value: string, grammar: NameGrammar, emptyOk = false): string | null {
  if (value.length === 0) return emptyOk ? null : 'must not be empty';
  if (value.length > grammar.maxLength) return `must be at most ${grammar.maxLength} characters`;
  if (!grammar.pattern.test(value))
    return `must consist of ${grammar.consistsOf}, and start and end with an alphanumeric character`;
  return null;
}

/** Why `value` is not a DNS-1123 subdomain, or null when it is one. */
export function dnsSubdomainProblem(value: string): string | null {
  return grammarProblem(value, DNS1123_SUBDOMAIN);
}

/** Why `value` is not a DNS-1123 label (namespace names), or null when it is one. */
export function dnsLabelProblem(value: string): string | null {
  return grammarProblem(value, DNS1123_LABEL);
}

/**
 * Why `value` is not a qualified name (`[prefix/]name`, as label keys and annotation
 * names are), or null when it is one.
 */
export function qualifiedNameProblem(value: string): string | null {
  const parts = value.split('/');
  if (parts.length > 2) return 'must be a name with at most one "/" (an optional DNS subdomain prefix)';
  const name = parts[parts.length - 1] ?? '';
  if (parts.length === 2) {
    const prefixProblem = dnsSubdomainProblem(parts[0] ?? '');
    if (prefixProblem !== null) return `prefix ${prefixProblem}`;
  }
  const nameProblem = grammarProblem(name, QUALIFIED_NAME_PART);
  return nameProblem === null ? null : `name part ${nameProblem}`;
}

/** Why `value` is not a valid label value, or null when it is one (empty is valid). */
export function labelValueProblem(value: string): string | null {
  return grammarProblem(value, QUALIFIED_NAME_PART, true);
}
