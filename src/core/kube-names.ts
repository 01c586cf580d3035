// Kubernetes name grammars (apimachinery validation), used for annotation names,
// label selectors and the names of the objects we read from untrusted manifests.

const QUALIFIED_NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `value` is not a DNS-1123 subdomain, or null when it is one. */
export function dnsSubdomainProblem(value: string): string | null {
  if (value.length === 0) return 'must not be empty';
  if (value.length > 253) return 'must be at most 253 characters';
  if (!DNS1123_SUBDOMAIN.test(value)) {
    return (
      'must consist of lower case alphanumeric characters, "-" or ".", and start and end with an alphanumeric ' +
      'character'
    );
  }
  return null;
}

/** Why `value` is not a DNS-1123 label (namespace names), or null when it is one. */
export function dnsLabelProblem(value: string): string | null {
  if (value.length === 0) return 'must not be empty';
  if (value.length > 63) return 'must be at most 63 characters';
  if (!DNS1123_LABEL.test(value)) {
    return (
      'must consist of lower case alphanumeric characters or "-", and start and end with an alphanumeric ' + 'character'
    );
  }
  return null;
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
  if (name.length === 0) return 'name part must not be empty';
  if (name.length > 63) return 'name part must be at most 63 characters';
  if (!QUALIFIED_NAME_PART.test(name)) {
    return (
      'name part must consist of alphanumeric characters, "-", "_" or ".", and start and end with an ' +
      'alphanumeric character'
    );
  }
  return null;
}

/** Why `value` is not a valid label value, or null when it is one (empty is valid). */
export function labelValueProblem(value: string): string | null {
  if (value.length === 0) return null;
  if (value.length > 63) return 'must be at most 63 characters';
  if (!QUALIFIED_NAME_PART.test(value)) {
    return 'must consist of alphanumeric characters, "-", "_" or ".", and start and end with an alphanumeric character';
  }
  return null;
}
